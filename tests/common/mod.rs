//! Shared by the privileged test files: a real rootfs directory and a real
//! mount namespace held by a sleeping process in its own cgroup, and a way
//! to run the hook binary against them as a runtime would.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use oci_systemd_hook::cgroup::{Layout, detect_layout};
use oci_systemd_hook::mountinfo::{self, Mount};
use serde_json::{Value, json};

pub const HOOK: &str = env!("CARGO_BIN_EXE_oci-systemd-hook");

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "privileged tests must run as root: they mount, unshare and make cgroups (run `make test-privileged` as root)"
    );
}

pub fn ns_inode(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Host mount points, to compare before and after.
pub fn host_mounts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mountinfo::read(None)
        .unwrap()
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    v.sort();
    v
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub sleeper: Child,
    pub cgroup_dirs: Vec<PathBuf>,
    /// The container's cgroup path as /proc/<pid>/cgroup shows it.
    pub cgroup: String,
    pub id: String,
    pub layout: Layout,
    /// When set, the pid of a process whose mount namespace stands in for
    /// the host ([`FakeHost`]): the sleeper is made from a copy of that
    /// namespace and the hook runs in it.
    pub outer: Option<u32>,
}

impl Sandbox {
    /// A bundle with `config` (root.path = "rootfs" is added) and a rootfs
    /// holding a little image content in /run and /tmp and a systemd 252
    /// (`usr/lib/systemd/libsystemd-shared-252.so`, empty: the version is
    /// all the hook reads).
    pub fn new(config: Value) -> Sandbox {
        Sandbox::new_in(config, None)
    }

    /// [`Sandbox::new`] with the sleeper's mount namespace copied from the
    /// namespace of process `outer` (a [`FakeHost`]) instead of the test's,
    /// and the hook run in `outer`'s namespace.
    pub fn new_in(config: Value, outer: Option<u32>) -> Sandbox {
        Sandbox::with_systemd(config, outer, Some(252))
    }

    /// [`Sandbox::new_in`] with an image whose systemd is `systemd` (`None`:
    /// no `libsystemd-shared-<N>.so` at all).
    pub fn with_systemd(mut config: Value, outer: Option<u32>, systemd: Option<u32>) -> Sandbox {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("osh-priv-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["run/lock", "tmp", "etc", "var/log", "sys/fs/cgroup", "proc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::write(rootfs.join("run/seed-run"), b"from image /run\n").unwrap();
        std::fs::write(rootfs.join("tmp/seed-tmp"), b"from image /tmp\n").unwrap();
        std::fs::write(rootfs.join("etc/machine-id"), b"").unwrap();
        if let Some(v) = systemd {
            let lib = rootfs.join("usr/lib/systemd");
            std::fs::create_dir_all(&lib).unwrap();
            std::fs::write(lib.join(format!("libsystemd-shared-{v}.so")), b"").unwrap();
        }
        config["ociVersion"] = json!("1.0.2");
        config["root"]["path"] = json!("rootfs");
        if config.get("process").is_none() {
            config["process"] =
                json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["/sbin/init"]});
        }
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();

        let ours = ns_inode(std::process::id());
        let outer_ns = outer.map(ns_inode).unwrap_or(ours);
        let mut cmd = match outer {
            // nsenter(1) does not fork for a mount namespace: the pid stays the sleeper's.
            Some(o) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &o.to_string(), "-m", "--", "unshare"]);
                c
            }
            None => Command::new("unshare"),
        };
        let sleeper = cmd
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .spawn()
            .expect("unshare(1) from util-linux");
        let pid = sleeper.id();
        let t0 = Instant::now();
        while ns_inode(pid) == ours || ns_inode(pid) == outer_ns || ns_inode(pid) == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sleeper never entered a new mount namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let layout = detect_layout().unwrap();
        let name = format!("oci-systemd-hook-test-{pid}");
        let mut cgroup_dirs = Vec::new();
        let v1 = ["systemd", "memory"];
        let mut bases: Vec<PathBuf> = match layout {
            Layout::Unified => vec![PathBuf::from("/sys/fs/cgroup")],
            _ => v1
                .iter()
                .map(|c| Path::new("/sys/fs/cgroup").join(c))
                .collect(),
        };
        if layout == Layout::Hybrid {
            bases.push(PathBuf::from("/sys/fs/cgroup/unified"));
        }
        for base in bases {
            let d = base.join(&name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("cgroup.procs"), pid.to_string()).unwrap();
            cgroup_dirs.push(d);
        }
        // A podman-like 64-hex id whose first 32 characters (the machine-id)
        // are unique per sandbox.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let uniq = format!("{nanos:016x}{pid:08x}");
        let id = format!("{uniq}{uniq}{uniq}")[..64].to_string();
        Sandbox {
            dir,
            bundle,
            rootfs,
            sleeper,
            cgroup_dirs,
            cgroup: format!("/{name}"),
            id,
            layout,
            outer,
        }
    }

    pub fn pid(&self) -> u32 {
        self.sleeper.id()
    }

    pub fn machine_id(&self) -> &str {
        &self.id[..32]
    }

    /// Runs the hook with `state` on stdin, cwd = bundle, env as given.
    pub fn hook(&self, state: &Value, env: &[(&str, &str)], clear_env: bool) -> Output {
        let mut cmd = match self.outer {
            Some(o) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &o.to_string(), "-m", "--", HOOK]);
                c
            }
            None => Command::new(HOOK),
        };
        cmd.current_dir(if clear_env {
            Path::new("/")
        } else {
            &self.bundle
        });
        if clear_env {
            cmd.env_clear().env("PWD", "/");
        }
        cmd.envs(env.iter().copied()).env_remove("stage");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(state.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn prestart(&self) -> Output {
        let state = json!({"ociVersion": "1.0.2", "id": self.id, "status": "creating", "pid": self.pid(), "bundle": self.bundle});
        self.hook(&state, &[("OCI_SYSTEMD_HOOK_LOG", "debug")], false)
    }

    pub fn poststop(&self) -> Output {
        let state = json!({"ociVersion": "1.0.2", "id": self.id, "status": "stopped", "bundle": self.bundle});
        self.hook(&state, &[], true)
    }

    /// Runs a command inside the sandbox's mount namespace.
    pub fn nsenter(&self, args: &[&str]) {
        let st = Command::new("nsenter")
            .arg("-t")
            .arg(self.pid().to_string())
            .arg("-m")
            .arg("--")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "nsenter {args:?}");
    }

    pub fn mounts(&self) -> Vec<Mount> {
        mountinfo::read(Some(self.pid() as i32)).unwrap()
    }

    /// The topmost mount at container path `p`.
    pub fn mount_at(&self, p: &str) -> Option<Mount> {
        let want = self.host_path(p);
        self.mounts().into_iter().rfind(|m| m.mount_point == want)
    }

    pub fn host_path(&self, p: &str) -> PathBuf {
        self.rootfs.join(p.trim_start_matches('/'))
    }

    /// Reads container path `p` as seen inside the namespace.
    pub fn read(&self, p: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(format!(
            "/proc/{}/root{}",
            self.pid(),
            self.host_path(p).display()
        ))
    }

    /// Permission bits of container path `p` as seen inside the namespace.
    pub fn mode(&self, p: &str) -> u32 {
        std::fs::metadata(format!(
            "/proc/{}/root{}",
            self.pid(),
            self.host_path(p).display()
        ))
        .unwrap()
        .mode()
            & 0o7777
    }

    pub fn host_journal(&self) -> PathBuf {
        Path::new("/var/log/journal").join(self.machine_id())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        for d in &self.cgroup_dirs {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(self.host_journal());
        let _ = &self.dir; // removed by TempDir's own Drop
    }
}

/// The error lines of a hook run (`oci-systemd-hook: error: ...`).
pub fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(": error: "))
        .map(str::to_string)
        .collect()
}

/// Whether `line` (an error line) says the hook refused on purpose: its
/// message, after the `<short id> <stage>: ` context, starts with the
/// stable class marker `run::REFUSED`.
pub fn line_is_refusal(line: &str) -> bool {
    line.split_once(": error: ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .is_some_and(|(_, msg)| msg.starts_with(oci_systemd_hook::run::REFUSED))
}

/// Whether the run's one error line is a refusal.
pub fn is_refusal(o: &Output) -> bool {
    matches!(error_lines(o).as_slice(), [l] if line_is_refusal(l))
}

pub fn assert_ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "hook failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn opt(m: &Mount, key: &str) -> Option<String> {
    m.super_options
        .get(key)
        .flatten()
        .map(|v| v.to_string_lossy().into_owned())
}

pub fn has_flag(m: &Mount, flag: &str) -> bool {
    m.options.contains(flag)
}

/// Cgroups made for a test process outside a [`Sandbox`]: one per hierarchy
/// the hook reads (`name=systemd` and `memory` on v1 hosts, plus cgroup2 on
/// hybrid ones, the cgroup2 root on unified ones), named `oci-systemd-hook-test-<what>-<test pid>`, removed
/// on drop once their processes are gone.
pub struct TestCgroups {
    pub dirs: Vec<PathBuf>,
}

impl TestCgroups {
    pub fn new(what: &str) -> TestCgroups {
        let name = format!("oci-systemd-hook-test-{what}-{}", std::process::id());
        let layout = detect_layout().unwrap();
        let mut bases: Vec<PathBuf> = match layout {
            Layout::Unified => vec![PathBuf::from("/sys/fs/cgroup")],
            _ => ["systemd", "memory"]
                .iter()
                .map(|c| Path::new("/sys/fs/cgroup").join(c))
                .collect(),
        };
        if layout == Layout::Hybrid {
            bases.push(PathBuf::from("/sys/fs/cgroup/unified"));
        }
        let dirs = bases.iter().map(|b| b.join(&name)).collect::<Vec<_>>();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        TestCgroups { dirs }
    }

    /// The directories, space-separated (for a shell script).
    pub fn dirs_arg(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A stand-in for the host: a process in a private mount namespace whose
/// root is a bind mount of a temporary directory holding its own
/// `etc/machine-id` (a regular file on the same mount as `/`, as on a real
/// host) and bind mounts of `/usr`, `/proc`, `/dev`, `/sys`, `/var/tmp` and
/// the hook's directory; no `/etc` of the real host. A hook run in it that
/// goes wrong can only damage the temporary directory.
pub struct FakeHost {
    pub root: tempfile::TempDir,
    pub holder: Child,
}

const FAKE_HOST_SCRIPT: &str = r#"set -e
R=$1
mount --bind "$R" "$R"
for d in usr bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"
  elif [ -d "/$d" ]; then mkdir -p "$R/$d"; mount --rbind "/$d" "$R/$d"; fi
done
for d in /proc /dev /sys /var/tmp "$2"; do mkdir -p "$R$d"; mount --rbind "$d" "$R$d"; done
mkdir "$R/old"
cd "$R"
pivot_root . old
umount -l /old
rmdir /old
exec sleep 600
"#;

impl FakeHost {
    /// Starts the holder; its `/etc/machine-id` holds `machine_id` and a newline.
    pub fn new(machine_id: &str) -> FakeHost {
        require_root();
        let root = tempfile::Builder::new()
            .prefix("osh-fakehost-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/machine-id"),
            format!("{machine_id}\n"),
        )
        .unwrap();
        let hook_dir = Path::new(HOOK).parent().unwrap();
        let ours = ns_inode(std::process::id());
        let holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                FAKE_HOST_SCRIPT,
                "sh",
            ])
            .arg(root.path())
            .arg(hook_dir)
            .spawn()
            .expect("unshare(1) from util-linux");
        let host = FakeHost { root, holder };
        // Ready when the holder's root is the temporary directory.
        let want = std::fs::metadata(host.root.path()).unwrap().ino();
        let mut host = host;
        loop {
            let ino = std::fs::metadata(format!("/proc/{}/root/", host.pid()))
                .map(|m| m.ino())
                .unwrap_or(0);
            // Ready when the script got to its last line (`exec sleep`).
            let comm =
                std::fs::read_to_string(format!("/proc/{}/comm", host.pid())).unwrap_or_default();
            if ino == want && ns_inode(host.pid()) != ours && comm.trim() == "sleep" {
                break;
            }
            if let Some(st) = host.holder.try_wait().unwrap() {
                panic!(
                    "the fake host exited ({st}) before pivoting into {}",
                    host.root.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        host
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// The fake host's `/etc/machine-id`, read from outside.
    pub fn machine_id_file(&self) -> PathBuf {
        self.root.path().join("etc/machine-id")
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// System calls of one process tree, counted from `strace -f`'s trace.
#[derive(Debug, Clone)]
pub struct Syscalls {
    /// Every call, failed ones included.
    pub total: u64,
    /// Calls per system call name, most frequent first.
    pub by_name: Vec<(String, u64)>,
}

impl std::fmt::Display for Syscalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (", self.total)?;
        for (i, (n, c)) in self.by_name.iter().enumerate() {
            write!(f, "{}{c} {n}", if i == 0 { "" } else { ", " })?;
        }
        write!(f, ")")
    }
}

/// Runs `exe` under `strace -f` with `state` on stdin, `env` added, cwd
/// `cwd` and no LD_LIBRARY_PATH (cargo sets one for tests: the dynamic
/// loader would search each of its directories, which no runtime makes it
/// do), and returns its output and the system calls it made from its execve
/// on (strace's own set-up is not counted).
///
/// Not counted: `fcntl(fd, F_GETFD)` right before `close(fd)`, the check
/// that Rust's std makes before closing an fd in debug builds only (the
/// tests run the debug build; a release build has no such call).
pub fn count_syscalls(
    exe: &str,
    state: &Value,
    env: &[(&str, &str)],
    cwd: &Path,
) -> (Output, Syscalls) {
    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(trace.path())
        .arg("--")
        .arg(exe)
        .current_dir(cwd)
        .env_remove("stage")
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace(1) (integration/setup-host.sh installs it)");
    // The program may exit before reading its stdin.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(state.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = std::fs::read_to_string(trace.path()).unwrap();
    // OSH_COST_TRACE=DIR keeps each trace there (DIR/<pid of the test>-<n>)
    // to see where the calls go.
    if let Ok(dir) = std::env::var("OSH_COST_TRACE") {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::create_dir_all(&dir);
        std::fs::write(format!("{dir}/{}-{n}", std::process::id()), &text).unwrap();
    }
    // "PID name(args) = result"; "+++ exited ..." and "--- SIG... ---" are
    // not calls.
    let calls: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let (name, args) = rest.split_once('(')?;
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .then_some((name, args))
        })
        .collect();
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for (i, (name, args)) in calls.iter().enumerate() {
        if *name == "fcntl"
            && let Some((fd, rest)) = args.split_once(", ")
            && rest.starts_with("F_GETFD)")
            && calls
                .get(i + 1)
                .is_some_and(|(n, a)| *n == "close" && a.starts_with(&format!("{fd})")))
        {
            continue;
        }
        *counts.entry(name.to_string()).or_default() += 1;
    }
    assert!(
        counts.contains_key("execve"),
        "no execve in the trace:\n{text}"
    );
    let mut by_name: Vec<(String, u64)> = counts.into_iter().collect();
    by_name.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total = by_name.iter().map(|(_, c)| c).sum();
    (out, Syscalls { total, by_name })
}
