//! `geode check` against every fixture in config/invalid: each `NAME.toml` has a
//! `NAME.expected` beside it holding the exact stderr, and must exit 64. The example
//! config must pass. Run from the repository root, as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{GEODE, repo};

fn check(config: &Path) -> Output {
    Command::new(GEODE)
        .args(["check", "--config"])
        .arg(config)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("run geode check")
}

fn fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("config/invalid"))
        .expect("config/invalid exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| Path::new("config/invalid").join(p.file_name().expect("file name")))
        .collect();
    out.sort();
    out
}

/// Splits `file:LINE: key: message` (the message may itself contain ": ").
fn shape(line: &str) -> Option<(&str, usize, &str, &str)> {
    let mut parts = line.splitn(3, ": ");
    let (file_line, key, message) = (parts.next()?, parts.next()?, parts.next()?);
    let (file, n) = file_line.rsplit_once(':')?;
    let n: usize = n.parse().ok()?;
    (!file.is_empty() && n > 0 && !key.is_empty() && !message.trim().is_empty())
        .then_some((file, n, key, message))
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_errors() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 20, "the fixtures are there: {fixtures:?}");
    let mut failures = Vec::new();
    for toml in &fixtures {
        let expected_path = repo().join(toml.with_extension("expected"));
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!("{}: no .expected file beside it", toml.display()));
            continue;
        };
        let out = check(toml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(64) {
            failures.push(format!(
                "{}: exit {:?}, want 64; stderr:\n{stderr}",
                toml.display(),
                out.status.code()
            ));
        }
        if stderr.trim() != expected.trim() {
            failures.push(format!(
                "{}: stderr differs\n--- expected\n{}\n--- got\n{}",
                toml.display(),
                expected.trim(),
                stderr.trim()
            ));
        }
        if !out.stdout.is_empty() {
            failures.push(format!(
                "{}: nothing on stdout for a bad config, got {}",
                toml.display(),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_expected_file_has_its_fixture() {
    for entry in std::fs::read_dir(repo().join("config/invalid")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "expected") {
            assert!(
                p.with_extension("toml").exists(),
                "{} has no .toml beside it",
                p.display()
            );
        }
    }
}

#[test]
fn every_error_line_names_file_line_key_and_message() {
    for toml in fixtures() {
        let expected = std::fs::read_to_string(repo().join(toml.with_extension("expected")))
            .unwrap_or_default();
        let text = std::fs::read_to_string(repo().join(&toml)).unwrap();
        let lines = text.lines().count();
        let mut last = 0;
        for line in expected.trim().lines() {
            let Some((file, n, key, _)) = shape(line) else {
                panic!("{}: not `file:LINE: key: message`: {line}", toml.display());
            };
            assert_eq!(
                Path::new(file),
                toml,
                "the path as given on the command line"
            );
            assert!(n <= lines, "{}: line {n} is past the end", toml.display());
            assert!(n >= last, "{}: problems sorted by line", toml.display());
            last = n;
            // The key is on that line (or names a syntax error).
            let src = text.lines().nth(n - 1).unwrap();
            let leaf = key
                .rsplit(['.', '['])
                .next()
                .unwrap()
                .trim_end_matches(']')
                .trim_matches('"');
            assert!(
                key == "(syntax)" || leaf.bytes().all(|b| b.is_ascii_digit()) || src.contains(leaf),
                "{}:{n}: key {key} is not on that line: {src}",
                toml.display()
            );
        }
    }
}

#[test]
fn several_problems_are_all_reported_in_line_order() {
    let out = check(Path::new("config/invalid/several_problems.toml"));
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<usize> = stderr
        .lines()
        .map(|l| shape(l).unwrap_or_else(|| panic!("shape: {l}")).1)
        .collect();
    assert!(lines.len() >= 4, "{stderr}");
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{stderr}");
}

#[test]
fn the_example_config_checks_ok() {
    let out = check(Path::new("config/example.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("config/example.toml: ok (1 zones, 1 services, 4 regions, 1 checks"),
        "{stdout}"
    );
}

#[test]
fn a_missing_config_file_exits_64_and_names_it() {
    let out = check(Path::new("config/no-such-file.toml"));
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("config/no-such-file.toml: cannot read config file:"),
        "{stderr}"
    );
}
