//! The browser client and the demo pages' inline scripts must parse as
//! ECMAScript 5, so old browsers can run them: `acorn --ecma5` (installed by
//! `npm ci --prefix tests`, as tests/run.sh does) checks every one, and the
//! check itself is shown to refuse newer syntax. tandem.js must even parse
//! as ECMAScript 3, for IE 6 to 8.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn acorn() -> PathBuf {
    let bin = root().join("tests/node_modules/acorn/bin/acorn");
    assert!(
        bin.exists(),
        "acorn is missing: run `npm ci --prefix tests` (tests/run.sh does)"
    );
    bin
}

/// Parses `file` as ECMAScript 5 script; Err(acorn's message) if it is not.
fn check_es5(file: &Path) -> Result<(), String> {
    let out = Command::new("node")
        .arg(acorn())
        .args(["--ecma5", "--silent"])
        .arg(file)
        .output()
        .expect("node is not installed");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn temp_script(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tandem-es5-{}-{name}.js", std::process::id()));
    std::fs::write(&path, text).expect("write a temp script");
    path
}

/// The inline `<script>` bodies of an HTML page (those without `src`).
/// Asserts that `check` (the `label` check) refuses the script `text`.
fn refused_by(check: fn(&Path) -> Result<(), String>, label: &str, name: &str, text: &str) {
    let tmp = temp_script(name, text);
    let result = check(&tmp);
    let _ = std::fs::remove_file(&tmp);
    assert!(
        result.is_err(),
        "the {label} check let `{}` through",
        text.trim()
    );
}

fn inline_scripts(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let tag_end = rest[start..].find('>').expect("a closed script tag") + start;
        let tag = &rest[start..tag_end];
        let end = rest[tag_end..].find("</script>").expect("a </script>") + tag_end;
        if !tag.contains("src=") {
            out.push(rest[tag_end + 1..end].to_string());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn tandem_js_is_es5() {
    check_es5(&root().join("src/web/tandem.js")).unwrap_or_else(|e| {
        panic!("src/web/tandem.js is not ECMAScript 5: {e}");
    });
}

/// The co-browsing scripts: the customer's widget runs on every page of a
/// site, old browsers included; the agent console keeps to the same rule.
#[test]
fn cobrowse_scripts_are_es5() {
    for file in ["src/web/cobrowse.js", "src/web/agent.js"] {
        check_es5(&root().join(file)).unwrap_or_else(|e| {
            panic!("{file} is not ECMAScript 5: {e}");
        });
    }
}

/// Parses `file` as ECMAScript 3 as old IE (6 to 8) does: also no reserved
/// word as a property name (`promise.catch`), which the acorn command line
/// lets through, hence its API with `allowReserved: "never"`.
fn check_es3(file: &Path) -> Result<(), String> {
    let script = "var acorn = require(process.argv[1]);
        var src = require('fs').readFileSync(process.argv[2], 'utf8');
        try { acorn.parse(src, {ecmaVersion: 3, allowReserved: 'never'}); }
        catch (e) { console.error(e.message); process.exit(1); }";
    acorn(); // installed?
    let out = Command::new("node")
        .args(["-e", script])
        .arg(root().join("tests/node_modules/acorn"))
        .arg(file)
        .output()
        .expect("node is not installed");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Old IE (6 to 8) parses ES3: no reserved words as property names, no
/// trailing commas. tandem.js keeps to that, so its JSONP and iframe
/// transports can run there.
#[test]
fn tandem_js_parses_in_es3_engines() {
    check_es3(&root().join("src/web/tandem.js")).unwrap_or_else(|e| {
        panic!("src/web/tandem.js does not parse as ECMAScript 3: {e}");
    });
    for (name, text) in [
        ("catch", "p.then(f)['catch'](g); p.catch(g);\n"),
        ("comma", "var o = {a: 1,};\n"),
    ] {
        refused_by(check_es3, "ES3", name, text);
    }
}

#[test]
fn demo_page_scripts_are_es5() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("src/web")).expect("src/web") {
        let path = entry.expect("a dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("html") {
            continue;
        }
        let html = std::fs::read_to_string(&path).expect("read a page");
        for (i, script) in inline_scripts(&html).iter().enumerate() {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("page");
            let tmp = temp_script(&format!("{name}-{i}"), script);
            let result = check_es5(&tmp);
            let _ = std::fs::remove_file(&tmp);
            if let Err(e) = result {
                panic!(
                    "inline script {i} of {} is not ECMAScript 5: {e}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the status and chat pages have inline scripts"
    );
}

#[test]
fn es5_check_refuses_newer_syntax() {
    let fine = temp_script("fine", "var f = function (x) { return x + 1; };\n");
    assert_eq!(check_es5(&fine), Ok(()));
    let _ = std::fs::remove_file(&fine);
    for (name, text) in [
        ("arrow", "var f = (x) => x + 1;\n"),
        ("let", "let x = 1;\n"),
        ("const", "const x = 1;\n"),
        ("template", "var s = `a ${1} b`;\n"),
        ("class", "class A {}\n"),
        ("spread", "f(...args);\n"),
    ] {
        refused_by(check_es5, "ES5", name, text);
    }
}
