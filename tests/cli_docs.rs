//! `tortie completion` and `tortie man`, run as a user runs them: the
//! completion script loads in bash and completes subcommands; the manual
//! pages cover every subcommand.

use std::process::Command;

fn tortie(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tortie")).args(args).output().expect("tortie runs")
}

/// What bash's completion offers for `words` (the last one being completed).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let program = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{line}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _tortie tortie \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        cword = words.len() - 1,
        line = words.join(" "),
    );
    let out = Command::new("bash").args(["--norc", "-c", &program]).output().unwrap();
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_completes_subcommands_and_their_values() {
    let out = tortie(&["completion", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert_eq!(bash_completes(&script, &["tortie", "mig"]), vec!["migrate"]);
    let bgp = bash_completes(&script, &["tortie", "bgp", ""]);
    for sub in ["peers", "routes", "decode", "encode"] {
        assert!(bgp.iter().any(|w| w == sub), "`bgp {sub}` not offered: {bgp:?}");
    }
    assert_eq!(bash_completes(&script, &["tortie", "completion", "fi"]), vec!["fish"]);
    for shell in ["zsh", "fish"] {
        let out = tortie(&["completion", shell]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("migrate"), "{shell}");
    }
    let bad = tortie(&["completion", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tcsh"));
}

#[test]
fn man_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = tortie(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["tortie.1", "tortie-node.1", "tortie-bgp-peers.1", "tortie-ipam.1", "tortie-migrate-from-calico.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH "), "{page} is a manual page:\n{text}");
        assert!(text.contains(".SH NAME"), "{page} has a NAME section:\n{text}");
    }
    let top = std::fs::read_to_string(dir.path().join("tortie.1")).unwrap();
    assert!(top.contains("migrate"), "the top page lists the subcommands:\n{top}");
    // A directory that cannot be made is a clear error, not a panic.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let bad = tortie(&["man", "--dir", file.join("sub").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot write the manual pages"));
}

#[test]
fn the_bash_completion_loads_as_a_user_sources_it() {
    let program = format!("source <('{}' completion bash) && complete -p tortie", env!("CARGO_BIN_EXE_tortie"));
    let out = Command::new("bash").args(["--norc", "-c", &program]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stderr.is_empty(), "{stdout}{stderr}");
    assert!(stdout.trim_end().ends_with("-F _tortie tortie"), "bash completes tortie with _tortie: {stdout}");
}

#[test]
fn the_generated_man_pages_render_with_man() {
    let dir = tempfile::tempdir().unwrap();
    assert!(tortie(&["man", "--dir", dir.path().to_str().unwrap()]).status.success());
    for (page, name_line) in [
        ("tortie.1", "tortie - Kubernetes node agent"),
        ("tortie-bgp-routes.1", "tortie-bgp-routes - Show the routes in the RIB"),
        ("tortie-completion.1", "tortie-completion - Print a shell completion script"),
    ] {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.path().join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man runs");
        let (text, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stderr.is_empty(), "man -l {page}: {stderr}");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let name =
            lines.iter().position(|l| *l == "NAME").unwrap_or_else(|| panic!("{page}: no NAME section:\n{text}"));
        // man justifies a line that fills the width: compare words, not spaces.
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words(lines[name + 1]).starts_with(name_line), "{page}: NAME reads {:?}", lines[name + 1]);
        assert!(lines.contains(&"SYNOPSIS"), "{page}: no SYNOPSIS:\n{text}");
    }
}
