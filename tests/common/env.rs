//! The outside tools the tests run, provided by the tests themselves, so that the README's test
//! command works on a fresh Debian/Ubuntu machine that has only the Rust toolchain:
//!
//! * [`python`]: a virtual environment in `target/test-env/python/venv` (under
//!   `CARGO_TARGET_DIR` when that is set) with the packages pinned, hashes and all, in
//!   `tests/requirements.txt` (zeep, aiosmtpd). Made on first use and reused after; made anew
//!   when the requirements file changes. Run with `-I`, so neither the system's site-packages,
//!   the user's, nor `PYTHON*` variables reach a test.
//! * [`node_soap`]: npm's `soap` in `target/test-env/node-soap`, installed with `npm ci` from
//!   `tests/interop/node/package-lock.json`, the same way.
//! * [`xmllint`]: Debian's `libxml2-utils`.
//! * [`sipp`]: Debian's `sip-tester`, the SIP peer of the telephony tests.
//! * [`kamailio`]: Debian's `kamailio`, the SIP proxy (a 407 challenger) of the telephony tests.
//!
//! A Debian package that is missing (`python3-venv`, `nodejs` and `npm`, `libxml2-utils`,
//! `sip-tester`) is
//! installed with `apt-get install -y` when the tests run as root or may use sudo without a
//! password; otherwise the test fails with a message that names the `apt-get install` line to
//! run.
//!
//! Several test binaries and their threads may ask at once. Within a process the first caller
//! provides the tool while the others wait (a `OnceLock`); across processes each tool is made
//! under an exclusive lock on a file beside it, and a stamp written last (a copy of the pinned
//! list it was made from) tells the next process that it is complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The repository root.
fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/test-env`: beside cargo's `target/tmp`, so in `CARGO_TARGET_DIR` when it is set.
pub fn test_env_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-env")
}

// ---------------------------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------------------------

/// The pinned Python packages.
pub fn requirements_file() -> PathBuf {
    manifest_dir().join("tests/requirements.txt")
}

/// The test virtual environment's directory (`target/test-env/python/venv`).
pub fn venv_dir() -> PathBuf {
    test_env_dir().join("python").join("venv")
}

/// The test virtual environment's interpreter, made on first use; panics with what to do when
/// it cannot be made.
pub fn python_exe() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(provide_python) {
        Ok(exe) => exe,
        Err(e) => panic!("the tests' Python tools (tests/requirements.txt) are missing: {e}"),
    }
}

/// A command running the test virtual environment's Python in isolated mode (`-I`: no user
/// site-packages, no `PYTHON*` variables, not the script's directory on `sys.path`); add the
/// script and its arguments.
pub fn python() -> Command {
    let mut command = Command::new(python_exe());
    command.arg("-I");
    command
}

fn provide_python() -> Result<PathBuf, String> {
    let requirements_path = requirements_file();
    let requirements = fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let venv = venv_dir();
    let exe = venv.join("bin").join("python");
    let stamp = venv.join("umws-requirements.txt");
    with_file_lock("python", || {
        if exe.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(&*requirements) {
            return Ok(exe.clone());
        }
        remove_dir(&venv)?;
        if !make_venv(&venv) {
            // Debian and Ubuntu ship `venv`'s pip bootstrap (ensurepip) in python3-venv.
            remove_dir(&venv)?;
            apt_install(
                &["python3", "python3-venv"],
                "the tests run Python tools (zeep, aiosmtpd) in a virtual environment, and \
                 `python3 -m venv` is not available",
            )?;
            remove_dir(&venv)?;
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                "python3 -m venv",
            )?;
        }
        run(
            Command::new(&exe)
                .args(["-I", "-m", "pip", "install"])
                .args(["--disable-pip-version-check", "--no-input", "--quiet"])
                .args(["--require-hashes", "--only-binary=:all:", "-r"])
                .arg(&requirements_path),
            "pip install -r tests/requirements.txt (into the test virtual environment)",
        )?;
        fs::write(&stamp, &requirements)
            .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
        Ok(exe.clone())
    })
}

/// `python3 -m venv DIR`; false when python3 or its venv support is missing.
fn make_venv(dir: &Path) -> bool {
    Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------------
// xmllint
// ---------------------------------------------------------------------------------------------

/// The `xmllint` program, installed from Debian's libxml2-utils when missing; panics with what
/// to do when it cannot be.
pub fn xmllint() -> &'static Path {
    static XMLLINT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match XMLLINT.get_or_init(provide_xmllint) {
        Ok(exe) => exe,
        Err(e) => panic!("xmllint is missing: {e}"),
    }
}

fn provide_xmllint() -> Result<PathBuf, String> {
    let works = || {
        Command::new("xmllint")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works() {
        apt_install(
            &["libxml2-utils"],
            "the schema validation tests run xmllint, which is not installed",
        )?;
        if !works() {
            return Err("libxml2-utils is installed, and `xmllint --version` still fails".into());
        }
    }
    Ok(PathBuf::from("xmllint"))
}

// ---------------------------------------------------------------------------------------------
// sipp
// ---------------------------------------------------------------------------------------------

/// The `sipp` program, installed from Debian's sip-tester when missing; panics with what to do
/// when it cannot be.
pub fn sipp() -> &'static Path {
    static SIPP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match SIPP.get_or_init(provide_sipp) {
        Ok(exe) => exe,
        Err(e) => panic!("sipp is missing: {e}"),
    }
}

fn provide_sipp() -> Result<PathBuf, String> {
    // (`sipp -v` prints its version and exits 99)
    let works = || {
        Command::new("sipp")
            .arg("-v")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("SIPp"))
    };
    if !works() {
        apt_install(
            &["sip-tester"],
            "the telephony tests run sipp as the phone, which is not installed",
        )?;
        if !works() {
            return Err("sip-tester is installed, and `sipp -v` still fails".into());
        }
    }
    Ok(PathBuf::from("sipp"))
}

// ---------------------------------------------------------------------------------------------
// kamailio
// ---------------------------------------------------------------------------------------------

/// The `kamailio` program and its modules' directory, installed from Debian's kamailio when
/// missing; `Err` says why it cannot be (the caller skips its test with that message).
pub fn kamailio() -> Result<&'static Kamailio, &'static str> {
    static KAMAILIO: OnceLock<Result<Kamailio, String>> = OnceLock::new();
    KAMAILIO
        .get_or_init(provide_kamailio)
        .as_ref()
        .map_err(|e| e.as_str())
}

/// Where kamailio is.
#[derive(Debug)]
pub struct Kamailio {
    /// The program.
    pub exe: PathBuf,
    /// The directory of its modules (`mpath`).
    pub modules: PathBuf,
}

fn provide_kamailio() -> Result<Kamailio, String> {
    let works = || {
        Command::new("kamailio")
            .arg("-v")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("kamailio"))
    };
    if !works() {
        apt_install(
            &["kamailio"],
            "the telephony tests run kamailio as a proxy, which is not installed",
        )?;
        if !works() {
            return Err("kamailio is installed, and `kamailio -v` still fails".into());
        }
    }
    // Debian puts the modules under the multiarch library directory.
    let modules = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ]
    .iter()
    .map(|lib| Path::new(lib).join("kamailio/modules"))
    .find(|dir| dir.join("auth.so").exists())
    .ok_or("kamailio is installed, and its modules (auth.so) are not found")?;
    Ok(Kamailio {
        exe: PathBuf::from("kamailio"),
        modules,
    })
}

// ---------------------------------------------------------------------------------------------
// node-soap
// ---------------------------------------------------------------------------------------------

/// Node.js with npm's `soap` package installed where [`NodeSoap::command`] finds it.
#[derive(Debug)]
pub struct NodeSoap {
    /// `node_modules` holding `soap` and its dependencies.
    pub modules: PathBuf,
}

impl NodeSoap {
    /// `node SCRIPT` with `soap` on its module path (`NODE_PATH`).
    pub fn command(&self, script: &Path) -> Command {
        let mut command = Command::new("node");
        command.arg(script).env("NODE_PATH", &self.modules);
        command
    }
}

/// Node.js and npm's `soap` at the version pinned in `tests/interop/node/package-lock.json`,
/// installed on first use; panics with what to do when they cannot be.
pub fn node_soap() -> &'static NodeSoap {
    static NODE_SOAP: OnceLock<Result<NodeSoap, String>> = OnceLock::new();
    match NODE_SOAP.get_or_init(provide_node_soap) {
        Ok(node) => node,
        Err(e) => panic!("node-soap (tests/interop/node) is missing: {e}"),
    }
}

/// The major version of `node`, when it runs.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn provide_node_soap() -> Result<NodeSoap, String> {
    let npm_works = || {
        Command::new("npm")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if node_major().is_none() || !npm_works() {
        apt_install(
            &["nodejs", "npm"],
            "the node-soap interop test runs Node.js and npm, which are not installed",
        )?;
    }
    match node_major() {
        Some(major) if major >= 18 => {}
        Some(major) => {
            return Err(format!(
                "node {major} is installed; npm's soap needs Node.js 18 or later"
            ))
        }
        None => return Err("`node --version` fails after installing nodejs".into()),
    }
    if !npm_works() {
        return Err("`npm --version` fails after installing npm".into());
    }
    let source = manifest_dir().join("tests/interop/node");
    let lock_path = source.join("package-lock.json");
    let lock = fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let dir = test_env_dir().join("node-soap");
    let modules = dir.join("node_modules");
    let stamp = dir.join("umws-package-lock.json");
    with_file_lock("node-soap", || {
        let installed = modules.join("soap").join("package.json").exists();
        if installed && fs::read_to_string(&stamp).ok().as_deref() == Some(&*lock) {
            return Ok(NodeSoap {
                modules: modules.clone(),
            });
        }
        remove_dir(&dir)?;
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for file in ["package.json", "package-lock.json"] {
            fs::copy(source.join(file), dir.join(file))
                .map_err(|e| format!("cannot copy {file} into {}: {e}", dir.display()))?;
        }
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .args(["--loglevel=error"])
                .current_dir(&dir),
            "npm ci (tests/interop/node/package-lock.json)",
        )?;
        fs::write(&stamp, &lock).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
        Ok(NodeSoap {
            modules: modules.clone(),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Debian packages, locks, processes
// ---------------------------------------------------------------------------------------------

/// Installs Debian packages with `apt-get install -y` (as root, or through `sudo -n`); when
/// that is not possible, or fails, the error says why (`why`: what needs them) and names the
/// line to run.
pub fn apt_install(packages: &[&str], why: &str) -> Result<(), String> {
    let line = format!("apt-get install -y {}", packages.join(" "));
    let manual = |reason: &str| {
        format!(
            "{why}; {reason}. Install the packages with\n\n    sudo {line}\n\nand run the \
             tests again."
        )
    };
    let has_apt = Command::new("apt-get")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_apt {
        return Err(manual("this machine has no apt-get to install them with"));
    }
    let sudo = if is_root() {
        false
    } else if Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        true
    } else {
        return Err(manual(
            "the tests run neither as root nor with sudo without a password, so they cannot \
             install them",
        ));
    };
    let apt_get = |args: &[&str]| {
        let mut command = if sudo {
            let mut sudo = Command::new("sudo");
            // (sudo resets the environment: hand DEBIAN_FRONTEND over through env)
            sudo.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            sudo
        } else {
            Command::new("apt-get")
        };
        // Another apt-get (one of ours in another test binary is excluded by the file lock)
        // may hold dpkg's lock: wait for it rather than fail.
        command
            .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    with_file_lock("apt", || {
        let mut install = apt_get(&["install", "-y"]);
        install.args(packages);
        if run(&mut install, &line).is_ok() {
            return Ok(());
        }
        // A fresh machine may have no package lists yet.
        let _ = run(&mut apt_get(&["update"]), "apt-get update");
        let mut install = apt_get(&["install", "-y"]);
        install.args(packages);
        run(&mut install, &line).map_err(|e| manual(&e))
    })
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `f` holding an exclusive lock on `target/test-env/NAME.lock` (released when this
/// process ends, however it ends).
fn with_file_lock<T>(name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let dir = test_env_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut lock = fd_lock::RwLock::new(file);
    let _held = lock
        .write()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    f()
}

/// Removes `dir` and everything in it, when it exists.
fn remove_dir(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// Runs `command` to completion; the error names `what` and holds its output.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{what}` could not be started: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    Err(format!(
        "`{what}` failed ({}):\n{}\n{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    ))
}
