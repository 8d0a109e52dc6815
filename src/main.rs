//! The `tortie` binary. All logic lives in the library; see [`tortie::cli`].

fn main() -> std::process::ExitCode {
    tortie::cli::main()
}
