//! The tortie binary is linked with the functions of `scripts/hot-functions.txt` together at
//! the start of its text (`scripts/link-ordered.sh`, run by rustc as the linker): what an agent
//! runs then lies in a few MB of pages instead of being spread over the whole executable.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_tortie");
const LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hot-functions.txt");

/// A function of the binary: its address, size and name as the list spells it.
struct Function {
    address: u64,
    size: u64,
    name: String,
}

/// The binary's defined functions with a size, by address.
fn functions() -> Vec<Function> {
    let nm = Command::new("nm").args(["-S", "-n", "--defined-only", BINARY]).output().expect("run nm");
    assert!(nm.status.success(), "nm {BINARY}: {}", String::from_utf8_lossy(&nm.stderr));
    let mut symbols = Vec::new();
    for line in String::from_utf8(nm.stdout).expect("nm prints text").lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [address, size, kind, symbol] = fields[..]
            && matches!(kind, "t" | "T" | "w" | "W")
        {
            let address = u64::from_str_radix(address, 16).expect("hex address");
            let size = u64::from_str_radix(size, 16).expect("hex size");
            symbols.push((address, size, symbol.to_string()));
        }
    }
    let names = demangle(symbols.iter().map(|(_, _, symbol)| symbol.as_str()));
    symbols.into_iter().zip(names).map(|((address, size, _), name)| Function { address, size, name }).collect()
}

/// Symbols demangled as the list spells them: by `c++filt`, crate hashes (`[0123abcd]`) removed.
fn demangle<'a>(symbols: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut filt = Command::new("c++filt")
        .args(["-s", "rust"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run c++filt");
    let input: String = symbols.map(|s| format!("{s}\n")).collect();
    let mut stdin = filt.stdin.take().expect("c++filt's stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = filt.wait_with_output().expect("c++filt ends");
    writer.join().expect("writer thread").expect("write to c++filt");
    let hash = regex::Regex::new(r"\[[0-9a-f]+\]").expect("pattern");
    String::from_utf8(output.stdout)
        .expect("c++filt prints text")
        .lines()
        .map(|name| hash.replace_all(name, "").into_owned())
        .collect()
}

#[test]
fn the_listed_functions_lie_together_at_the_start_of_the_text() {
    let list = std::fs::read_to_string(LIST).expect("scripts/hot-functions.txt");
    let listed: HashSet<&str> = list.lines().collect();
    let functions = functions();
    let hot: Vec<&Function> = functions.iter().filter(|f| listed.contains(f.name.as_str())).collect();
    assert!(hot.len() >= 1000, "only {} functions of the list are in the binary", hot.len());
    let hot_octets: u64 = hot.iter().map(|f| f.size).sum();
    let start = hot.iter().map(|f| f.address).min().expect("some listed function");
    let end = hot.iter().map(|f| f.address + f.size).max().expect("some listed function");
    // Alignment padding between functions is the only room allowed between them.
    assert!(
        end - start <= hot_octets + hot_octets / 2,
        "{} listed functions ({hot_octets} octets) are spread over {} octets",
        hot.len(),
        end - start
    );
    let text_start = functions.iter().map(|f| f.address).min().expect("some function");
    let before: u64 = functions.iter().filter(|f| f.address < start).map(|f| f.size).sum();
    assert!(
        before <= hot_octets / 10,
        "{before} octets of other functions come before the listed ones (text from {text_start:#x})"
    );
}
