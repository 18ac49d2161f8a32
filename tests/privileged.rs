//! Privileged tests: each builds a real rootfs directory and a real mount
//! namespace held by a sleeping process (placed in its own cgroup), runs the
//! hook binary against it exactly as a runtime would (state on stdin, cwd =
//! bundle), and reads the namespace's mount table from
//! `/proc/<pid>/mountinfo`. Nothing is mocked.
//!
//! Needs root; run serially (`cargo test --test privileged -- --test-threads=1`,
//! `make test-privileged`). Without root every test fails with the reason.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use oci_systemd_hook::cgroup::Layout;
use serde_json::json;

#[test]
#[serial_test::serial]
fn prestart_prepares_the_namespace_and_poststop_cleans_up() {
    let sb = Sandbox::new(json!({"linux": {"resources": {"memory": {"limit": 268435456}}}}));
    let host_before = host_mounts();
    assert!(sb.mount_at("/run").is_none());
    assert_ok(&sb.prestart());

    // tmpfs on /run, /run/lock, /tmp with the documented options.
    for (p, mode, size) in [
        ("/run", 0o755, Some("65536k")),
        ("/run/lock", 0o755, Some("65536k")),
        ("/tmp", 0o1777, Some("131072k")),
    ] {
        let m = sb.mount_at(p).unwrap_or_else(|| panic!("no mount at {p}"));
        assert_eq!(m.fs_type, "tmpfs", "{p}");
        assert_eq!(sb.mode(p), mode, "{p} mode");
        assert_eq!(opt(&m, "size").as_deref(), size, "{p} size");
        assert!(
            has_flag(&m, "nosuid") && has_flag(&m, "nodev"),
            "{p}: {:?}",
            m.options
        );
        assert!(has_flag(&m, "rw"), "{p}");
    }
    // tmpcopyup: image content is visible in the new tmpfs.
    assert_eq!(sb.read("/run/seed-run").unwrap(), b"from image /run\n");
    assert_eq!(sb.read("/tmp/seed-tmp").unwrap(), b"from image /tmp\n");

    // The journal: a host dir bound at the same path.
    let mid = sb.machine_id().to_string();
    assert!(sb.host_journal().is_dir());
    let j = sb
        .mount_at(&format!("/var/log/journal/{mid}"))
        .expect("journal bind");
    assert_eq!(j.root, sb.host_journal(), "bound from the host journal dir");
    assert!(has_flag(&j, "rw"));

    // /etc/machine-id.
    assert_eq!(
        sb.read("/etc/machine-id").unwrap(),
        format!("{mid}\n").as_bytes()
    );

    // cgroups.
    match sb.layout {
        Layout::Hybrid | Layout::Legacy => {
            let t = sb
                .mount_at("/sys/fs/cgroup")
                .expect("tmpfs on /sys/fs/cgroup");
            assert_eq!(t.fs_type, "tmpfs");
            assert!(
                has_flag(&t, "ro"),
                "/sys/fs/cgroup read-only: {:?}",
                t.options
            );
            let h = sb
                .mount_at("/sys/fs/cgroup/systemd")
                .expect("name=systemd hierarchy");
            assert_eq!(h.fs_type, "cgroup");
            assert_eq!(h.root, Path::new("/"));
            assert!(has_flag(&h, "ro"), "hierarchy read-only");
            let own = sb
                .mount_at(&format!("/sys/fs/cgroup/systemd{}", sb.cgroup))
                .expect("own cgroup");
            assert_eq!(own.root, Path::new(&sb.cgroup));
            assert!(has_flag(&own, "rw"), "own cgroup writable");
            let ra = sb
                .mount_at("/sys/fs/cgroup/systemd/release_agent")
                .expect("release_agent masked");
            assert!(has_flag(&ra, "ro"));
        }
        Layout::Unified => assert!(sb.mount_at("/sys/fs/cgroup").is_none()),
    }

    // Nothing changed on the host's mount table.
    assert_eq!(host_mounts(), host_before);

    // Poststop: no pid, no PATH; empties the machine-id; twice is fine.
    for _ in 0..2 {
        assert_ok(&sb.poststop());
        assert_eq!(
            std::fs::read(sb.rootfs.join("etc/machine-id")).unwrap(),
            b""
        );
    }
}

#[test]
#[serial_test::serial]
fn user_mounts_under_run_and_tmp_stay_visible_with_their_mode() {
    let sb = Sandbox::new(json!({}));
    let src = sb.dir.path().join("secrets");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("key"), b"s3cret").unwrap();
    let sock = sb.dir.path().join("app.sock");
    std::fs::write(&sock, b"").unwrap();
    std::fs::create_dir_all(sb.rootfs.join("run/secrets/app")).unwrap();
    std::fs::write(sb.rootfs.join("run/app.sock"), b"").unwrap();
    std::fs::create_dir_all(sb.rootfs.join("tmp/work")).unwrap();
    sb.nsenter(&[
        "mount",
        "--bind",
        "-o",
        "ro",
        src.to_str().unwrap(),
        sb.host_path("/run/secrets/app").to_str().unwrap(),
    ]);
    sb.nsenter(&[
        "mount",
        "--bind",
        sock.to_str().unwrap(),
        sb.host_path("/run/app.sock").to_str().unwrap(),
    ]);
    sb.nsenter(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        sb.host_path("/tmp/work").to_str().unwrap(),
    ]);
    std::fs::write(
        format!(
            "/proc/{}/root{}/marker",
            sb.pid(),
            sb.host_path("/tmp/work").display()
        ),
        b"w",
    )
    .unwrap();

    assert_ok(&sb.prestart());

    let run = sb.mount_at("/run").unwrap();
    let tmp = sb.mount_at("/tmp").unwrap();
    let secrets = sb.mount_at("/run/secrets/app").expect("volume kept");
    assert_eq!(
        secrets.parent, run.id,
        "the volume now sits on the new /run tmpfs"
    );
    assert!(has_flag(&secrets, "ro"), "still read-only");
    assert_eq!(sb.read("/run/secrets/app/key").unwrap(), b"s3cret");
    let s = sb.mount_at("/run/app.sock").expect("file bind kept");
    assert_eq!(s.parent, run.id);
    assert!(has_flag(&s, "rw"));
    let w = sb.mount_at("/tmp/work").expect("mount under /tmp kept");
    assert_eq!(w.parent, tmp.id);
    assert_eq!(sb.read("/tmp/work/marker").unwrap(), b"w");
    // Mounted content was moved, not copied into the tmpfs underneath.
    assert!(
        !sb.mounts()
            .iter()
            .any(|m| m.mount_point == sb.host_path("/run/secrets/app") && m.parent != run.id)
    );
}

#[test]
#[serial_test::serial]
fn destinations_mounted_by_config_are_left_alone() {
    let sb = Sandbox::new(json!({"mounts": [
        {"destination": "/run/", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/etc/machine-id", "type": "bind", "source": "/dev/null"}
    ]}));
    assert_ok(&sb.prestart());
    assert!(
        sb.mount_at("/run").is_none(),
        "config.json mounts /run: the runtime does it, not the hook"
    );
    assert_eq!(
        sb.mount_at("/run/lock")
            .map(|m| m.fs_type.to_string_lossy().into_owned())
            .as_deref(),
        Some("tmpfs")
    );
    assert_eq!(
        sb.read("/etc/machine-id").unwrap(),
        b"",
        "machine-id untouched"
    );
}

#[test]
#[serial_test::serial]
fn private_cgroupns_binds_the_own_cgroup_at_the_hierarchy_mount_point() {
    let sb =
        Sandbox::new(json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "cgroup"}]}}));
    assert_ok(&sb.prestart());
    match sb.layout {
        Layout::Hybrid | Layout::Legacy => {
            let m = sb.mount_at("/sys/fs/cgroup/systemd").unwrap();
            assert_eq!(
                m.root, sb.cgroup,
                "the container's own cgroup, not the hierarchy"
            );
            assert!(has_flag(&m, "rw"));
            assert!(
                sb.mount_at("/sys/fs/cgroup/systemd/release_agent")
                    .is_none()
            );
        }
        Layout::Unified => {}
    }
}

#[test]
#[serial_test::serial]
fn read_only_image_gets_machine_id_by_bind_and_journal_in_run() {
    let sb = Sandbox::new(json!({"root": {"readonly": true}}));
    assert_ok(&sb.prestart());
    let mid = sb.machine_id().to_string();
    assert_eq!(
        sb.read("/etc/machine-id").unwrap(),
        format!("{mid}\n").as_bytes()
    );
    assert_eq!(
        std::fs::read(sb.rootfs.join("etc/machine-id")).unwrap(),
        b"",
        "image file unchanged"
    );
    let m = sb
        .mount_at("/etc/machine-id")
        .expect("bind over /etc/machine-id");
    assert!(has_flag(&m, "ro"));
    assert!(sb.mount_at(&format!("/run/log/journal/{mid}")).is_some());
    assert!(
        !sb.rootfs.join("var/log/journal").exists(),
        "nothing created in the image"
    );
    assert_ok(&sb.poststop());
}

#[test]
#[serial_test::serial]
fn failure_midway_leaves_nothing_on_the_host() {
    let sb = Sandbox::new(json!({}));
    std::fs::remove_dir_all(sb.rootfs.join("tmp")).unwrap();
    std::fs::write(sb.rootfs.join("tmp"), b"a file where a directory belongs").unwrap();
    let host_before = host_mounts();
    let o = sb.prestart();
    assert_eq!(o.status.code(), Some(1));
    let errors: Vec<_> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(": error: "))
        .map(str::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("/tmp"), "{errors:?}");
    assert!(
        !sb.host_journal().exists(),
        "journal dir made before the failure is removed"
    );
    assert_eq!(host_mounts(), host_before);
}

#[test]
#[serial_test::serial]
fn non_systemd_container_is_not_touched() {
    let sb = Sandbox::new(
        json!({"process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sleep", "100"]}}),
    );
    let before: Vec<_> = sb.mounts().into_iter().map(|m| m.mount_point).collect();
    assert_ok(&sb.prestart());
    let after: Vec<_> = sb.mounts().into_iter().map(|m| m.mount_point).collect();
    assert_eq!(before, after);
    assert!(!sb.host_journal().exists());
    assert_eq!(
        std::fs::read(sb.rootfs.join("etc/machine-id")).unwrap(),
        b""
    );
}

#[test]
#[serial_test::serial]
fn refuses_a_pid_in_the_host_mount_namespace() {
    let sb = Sandbox::new(json!({}));
    let mut host_proc = Command::new("sleep").arg("60").spawn().unwrap();
    let host_before = host_mounts();
    let state = json!({"id": sb.id, "pid": host_proc.id(), "bundle": sb.bundle});
    let o = sb.hook(&state, &[], false);
    let _ = host_proc.kill();
    let _ = host_proc.wait();
    assert_eq!(o.status.code(), Some(1));
    assert!(is_refusal(&o), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(host_mounts(), host_before);
    assert!(!sb.host_journal().exists());
}

#[test]
#[serial_test::serial]
fn errors_reach_journald_with_container_fields() {
    require_root();
    // A real systemd-journald, started in a private mount namespace with its
    // own /run/systemd and /run/log, receives the hook's error record.
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || {{ mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd; }}
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/log
/lib/systemd/systemd-journald & jp=$!
trap 'kill $jp' EXIT
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
echo '{{"id":"0123456789abcdef0123456789abcdef","pid":1,"bundle":"/nonexistent"}}' | {hook} 2>/dev/null || true
sleep 0.3
journalctl -D /run/log/journal -t oci-systemd-hook -o verbose --no-pager"#,
        hook = HOOK
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("PRIORITY=3"), "{text}");
    assert!(
        text.contains("OCI_CONTAINER_ID=0123456789abcdef0123456789abcdef"),
        "{text}"
    );
    assert!(text.contains("OCI_STAGE=prestart"), "{text}");
    assert!(
        text.contains("MESSAGE=0123456789ab prestart: cannot load /nonexistent/config.json"),
        "{text}"
    );
}

#[test]
#[serial_test::serial]
fn user_namespace_root_owns_what_the_hook_creates() {
    let sb = Sandbox::new(json!({"linux": {
        "namespaces": [{"type": "mount"}, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100100, "size": 65536}]
    }}));
    // The machine-id file does not exist in this image: the hook creates it.
    std::fs::remove_file(sb.rootfs.join("etc/machine-id")).unwrap();
    assert_ok(&sb.prestart());
    let owner = |p: &str| {
        let m = std::fs::metadata(format!(
            "/proc/{}/root{}",
            sb.pid(),
            sb.host_path(p).display()
        ))
        .unwrap();
        (m.uid(), m.gid())
    };
    for p in ["/run", "/run/lock", "/tmp"] {
        assert_eq!(owner(p), (100000, 100100), "{p}");
        assert!(
            sb.mount_at(p).unwrap().super_options.contains("uid"),
            "{p}: uid= option"
        );
    }
    assert_eq!(owner("/etc/machine-id"), (100000, 100100));
    let j = std::fs::metadata(sb.host_journal()).unwrap();
    assert_eq!((j.uid(), j.gid()), (100000, 100100), "host journal dir");
    assert_eq!(
        std::fs::metadata("/var/log/journal").unwrap().uid(),
        0,
        "its parent is not chowned"
    );
    if sb.layout != Layout::Unified {
        let cg = Path::new("/sys/fs/cgroup/systemd").join(sb.cgroup.trim_start_matches('/'));
        for f in ["", "cgroup.procs", "tasks"] {
            let m = std::fs::metadata(cg.join(f)).unwrap();
            assert_eq!(
                (m.uid(), m.gid()),
                (100000, 100100),
                "{}",
                cg.join(f).display()
            );
        }
        assert_eq!(
            std::fs::metadata(cg.join("cgroup.procs").parent().unwrap().parent().unwrap())
                .unwrap()
                .uid(),
            0
        );
    }
}

#[test]
#[serial_test::serial]
fn partial_id_mappings_fail_prestart_cleanly() {
    let sb = Sandbox::new(json!({"linux": {
        "namespaces": [{"type": "mount"}, {"type": "user"}],
        "uidMappings": [{"containerID": 1, "hostID": 100000, "size": 65536}],
        "gidMappings": []
    }}));
    let o = sb.prestart();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mapping"), "{err}");
    assert!(sb.mount_at("/run").is_none());
}

#[test]
#[serial_test::serial]
fn a_journal_dir_the_hook_may_not_make_is_skipped_and_the_rest_done() {
    // A read-only /var/log/journal, as a rootless hook meets it: bound
    // read-only in a private mount namespace the hook runs in.
    let sb = Sandbox::new(json!({}));
    let made = !Path::new("/var/log/journal").exists();
    std::fs::create_dir_all("/var/log/journal").unwrap();
    let state = json!({"id": sb.id, "pid": sb.pid(), "bundle": sb.bundle});
    let script = format!("mount --bind -o ro /var/log/journal /var/log/journal && exec {HOOK}");
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .current_dir(&sb.bundle)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        state.to_string().as_bytes(),
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    if made {
        let _ = std::fs::remove_dir("/var/log/journal");
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("warn") && err.contains("skipped"), "{err}");
    assert!(!sb.host_journal().exists());
    assert_eq!(
        sb.mount_at("/run")
            .map(|m| m.fs_type.to_string_lossy().into_owned())
            .as_deref(),
        Some("tmpfs"),
        "the rest is done"
    );
    assert!(
        sb.mount_at(&format!("/var/log/journal/{}", sb.machine_id()))
            .is_none()
    );
}

#[test]
#[serial_test::serial]
fn prestart_twice_is_safe() {
    let sb = Sandbox::new(json!({}));
    assert_ok(&sb.prestart());
    std::fs::write(
        format!(
            "/proc/{}/root{}/made-by-first",
            sb.pid(),
            sb.host_path("/run").display()
        ),
        b"1",
    )
    .unwrap();
    let host_before = host_mounts();
    assert_ok(&sb.prestart());
    assert_eq!(
        sb.mount_at("/run")
            .map(|m| m.fs_type.to_string_lossy().into_owned())
            .as_deref(),
        Some("tmpfs")
    );
    assert_eq!(
        sb.read("/run/made-by-first").unwrap(),
        b"1",
        "the second copy-up carries the first tmpfs' content"
    );
    assert_eq!(
        sb.read("/etc/machine-id").unwrap(),
        format!("{}\n", sb.machine_id()).as_bytes()
    );
    assert!(sb.mount_at("/run/lock").is_some());
    assert_eq!(host_mounts(), host_before);
    assert_ok(&sb.poststop());
    assert_ok(&sb.poststop());
}

#[test]
#[serial_test::serial]
fn a_cgroup_shared_with_host_processes_is_never_made_writable_or_chowned() {
    let sb = Sandbox::new(json!({"linux": {
        "namespaces": [{"type": "mount"}, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
    }}));
    // A host process joins the container's cgroup (as with --cgroups=disabled).
    let mut host = Command::new("sleep").arg("60").spawn().unwrap();
    let procs = sb.cgroup_dirs[0].join("cgroup.procs");
    std::fs::write(&procs, host.id().to_string()).unwrap();
    let o = sb.prestart();
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(o.status.code(), Some(1));
    assert!(is_refusal(&o), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not in the container"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in ["", "cgroup.procs"] {
        let m = std::fs::metadata(sb.cgroup_dirs[0].join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (0, 0),
            "ownership restored or never changed: {f}"
        );
    }
    assert!(!sb.host_journal().exists());
}

#[test]
#[serial_test::serial]
fn an_existing_journal_dir_is_reused_only_by_its_own_container() {
    let sb = Sandbox::new(json!({}));
    // Not made by the hook: left alone, the journal is skipped.
    std::fs::create_dir(sb.host_journal()).unwrap();
    let o = sb.prestart();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not made for this container"));
    assert!(
        sb.mount_at(&format!("/var/log/journal/{}", sb.machine_id()))
            .is_none()
    );
    std::fs::remove_dir(sb.host_journal()).unwrap();
    // Made by the hook for this container: reused on the next start.
    let sb2 = Sandbox::new(json!({}));
    assert_ok(&sb2.prestart());
    let mut sb3 = Sandbox::new(json!({}));
    sb3.id = sb2.id.clone(); // the same container, started again
    assert_ok(&sb3.prestart());
    assert!(
        sb3.mount_at(&format!("/var/log/journal/{}", sb3.machine_id()))
            .is_some()
    );
}

/// A user-namespace config: the hook chowns the own cgroup, so a refusal
/// must also leave the cgroup's owner alone.
fn userns_config() -> serde_json::Value {
    json!({"linux": {
        "namespaces": [{"type": "mount"}, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
    }})
}

/// A host process for a test (not in any sandbox's mount namespace): killed
/// by its pid and reaped on drop, then the cgroups made for it removed,
/// deepest first.
struct HostProcess {
    child: std::process::Child,
    cgroups: Vec<std::path::PathBuf>,
}

impl HostProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in self.cgroups.iter().rev() {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Asserts that prestart refused with "not in the container" and changed
/// nothing: no journal dir, the own cgroup's owner unchanged, no mount on the
/// host or in the container.
fn assert_refused_cleanly(sb: &Sandbox, o: &std::process::Output, host_before: &[PathBuf]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not in the container"), "{err}");
    assert!(is_refusal(o), "a refusal, not a failure: {err}");
    for f in ["", "cgroup.procs"] {
        let m = std::fs::metadata(sb.cgroup_dirs[0].join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "owner of the own cgroup {f}");
    }
    assert!(!sb.host_journal().exists(), "journal dir left");
    assert_eq!(host_mounts(), host_before);
    assert!(
        sb.mount_at("/run").is_none(),
        "nothing done in the container"
    );
}

#[test]
#[serial_test::serial]
fn a_host_process_in_a_child_cgroup_of_the_container_is_seen() {
    let sb = Sandbox::new(userns_config());
    let nested = sb.cgroup_dirs[0].join("nested");
    let deeper = nested.join("deeper");
    let mut host = HostProcess {
        child: Command::new("sleep").arg("600").spawn().unwrap(),
        cgroups: Vec::new(),
    };
    for d in [&nested, &deeper] {
        std::fs::create_dir(d).unwrap();
        host.cgroups.push(d.clone());
    }
    std::fs::write(deeper.join("cgroup.procs"), host.pid().to_string()).unwrap();
    let host_before = host_mounts();
    let o = sb.prestart();
    assert_refused_cleanly(&sb, &o, &host_before);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nested/deeper"),
        "the error names the cgroup: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Tells the helper test below to run (it does nothing otherwise).
const LEADER_HELPER_ENV: &str = "OSH_TEST_LEADER_EXIT_HELPER";
/// What the helper prints once its signal handler is in place (libtest
/// prints the test's name before it on the same line).
const HELPER_READY: &str = "osh-helper-ready";

/// Not a test: the helper process of
/// `a_process_whose_main_thread_exited_is_not_taken_for_gone`. It keeps a
/// second thread alive, makes SIGUSR1 end only the thread that receives it
/// (`exit(2)`, not `exit_group(2)`), prints [`HELPER_READY`] and waits to be
/// killed.
#[test]
#[ignore = "helper process, run by a_process_whose_main_thread_exited_is_not_taken_for_gone"]
fn helper_whose_main_thread_exits_on_sigusr1() {
    if std::env::var_os(LEADER_HELPER_ENV).is_none() {
        return;
    }
    extern "C" fn exit_this_thread(_: libc::c_int) {
        // SAFETY: exit(2) ends the calling thread only; async-signal-safe.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }
    // SAFETY: installs a handler that only makes a system call.
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            exit_this_thread as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600))
        }
    });
    println!("{HELPER_READY}");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600))
    }
}

/// The state letter of thread `tid` of process `pid` (`R`, `S`, `Z`, ...).
fn thread_state(pid: u32, tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
#[serial_test::serial]
fn a_process_whose_main_thread_exited_is_not_taken_for_gone() {
    use std::io::BufRead;
    let sb = Sandbox::new(userns_config());
    let mut host = HostProcess {
        child: Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_whose_main_thread_exits_on_sigusr1",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LEADER_HELPER_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        cgroups: Vec::new(),
    };
    let pid = host.pid();
    let out = std::io::BufReader::new(host.child.stdout.take().unwrap());
    assert!(
        out.lines()
            .map_while(Result::ok)
            .any(|l| l.contains(HELPER_READY)),
        "the helper never got ready"
    );
    // Into the container's own cgroup with all its threads, then its main
    // thread exits: a zombie leader with a live thread in the host's mount
    // namespace.
    std::fs::write(sb.cgroup_dirs[0].join("cgroup.procs"), pid.to_string()).unwrap();
    // SAFETY: tgkill(2) with the helper's pid and its main thread's tid.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGUSR1) };
    assert_eq!(r, 0, "tgkill");
    let mut polls = 0;
    while thread_state(pid, pid) != Some('Z') {
        polls += 1;
        assert!(polls < 10_000, "the helper's main thread never exited");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The case itself: listed in the cgroup, its ns/mnt unreadable.
    let procs = std::fs::read_to_string(sb.cgroup_dirs[0].join("cgroup.procs")).unwrap();
    assert!(
        procs.split_whitespace().any(|p| p == pid.to_string()),
        "{procs}"
    );
    assert!(std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_err());
    let host_before = host_mounts();
    let o = sb.prestart();
    assert_refused_cleanly(&sb, &o, &host_before);
}

#[test]
#[serial_test::serial]
fn a_machine_id_taken_by_another_container_keeps_the_journal_inside() {
    // `earlier` claims the machine-id that `later` derives from its id.
    let later = Sandbox::new(json!({}));
    let earlier = Sandbox::new(json!({"process": {
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["/sbin/init"],
        "env": [format!("container_uuid={}", later.machine_id())]
    }}));
    let mid = later.machine_id().to_string();
    assert_ok(&earlier.prestart());
    assert!(
        earlier
            .mount_at(&format!("/var/log/journal/{mid}"))
            .is_some()
    );
    let o = later.prestart();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "later boots: {err}");
    let warnings: Vec<_> = err.lines().filter(|l| l.contains(": warn: ")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {err}");
    assert!(
        warnings[0].contains(&earlier.id[..12]) && warnings[0].contains(&mid),
        "the warning names the journal dir and its container: {}",
        warnings[0]
    );
    assert!(
        later.mount_at(&format!("/var/log/journal/{mid}")).is_none()
            && later.mount_at(&format!("/run/log/journal/{mid}")).is_none(),
        "no host journal bound into the later container"
    );
    assert_eq!(
        later.read("/etc/machine-id").unwrap(),
        format!("{mid}\n").as_bytes()
    );
    assert_eq!(
        later.mount_at("/run").map(|m| m.fs_type).as_deref(),
        Some(std::ffi::OsStr::new("tmpfs")),
        "the rest is done"
    );
    // Neither poststop removes the journal dir of the container that made it.
    assert_ok(&later.poststop());
    assert_ok(&earlier.poststop());
    assert!(later.host_journal().is_dir());
    let mut buf = [0u8; 128];
    let n = rustix::fs::getxattr(
        later.host_journal(),
        oci_systemd_hook::apply::JOURNAL_MARKER_XATTR,
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..n], earlier.id.as_bytes());
}

/// A fanotify group that holds every open of one file until the test
/// answers (`FAN_OPEN_PERM`): stops a process at a known point of its work,
/// whatever the machine's speed.
struct OpenGate(std::os::fd::OwnedFd);

impl OpenGate {
    fn new(file: &Path) -> OpenGate {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: fanotify_init(2) with constant flags; the fd is owned below.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
            )
        };
        assert!(
            fd >= 0,
            "fanotify_init: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just returned to us and is not owned elsewhere.
        let gate = OpenGate(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let path = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid fanotify fd and a NUL-terminated path.
        let r = unsafe {
            libc::fanotify_mark(
                fd,
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_PERM,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        assert_eq!(r, 0, "fanotify_mark: {}", std::io::Error::last_os_error());
        gate
    }

    /// The pids of the processes now held in an open of the file, each
    /// with the event's fd to answer with [`OpenGate::allow`]; empty when
    /// none is waiting after a short poll.
    fn waiting(&self) -> Vec<(i32, std::os::fd::OwnedFd)> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
        let mut buf = vec![0u8; meta * 16];
        // SAFETY: reads into a buffer of buf.len() bytes.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let mut out = Vec::new();
        let mut off = 0;
        while n > 0 && off + meta <= n as usize {
            // SAFETY: the kernel wrote a whole event at off (event_len steps).
            let ev: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            if ev.fd >= 0 {
                // SAFETY: the event's fd is ours to close.
                out.push((ev.pid, unsafe { std::os::fd::OwnedFd::from_raw_fd(ev.fd) }));
            }
            off += ev.event_len as usize;
        }
        out
    }

    /// Lets the held open go on.
    fn allow(&self, event: std::os::fd::OwnedFd) {
        use std::os::fd::AsRawFd;
        let answer = libc::fanotify_response {
            fd: event.as_raw_fd(),
            response: libc::FAN_ALLOW,
        };
        // SAFETY: writes one fanotify_response; an answer to a process that
        // is already gone fails harmlessly.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&raw const answer).cast(),
                std::mem::size_of_val(&answer),
            )
        };
    }
}

#[test]
#[serial_test::serial]
fn poststop_undoes_what_a_killed_prestart_left_on_the_host() {
    use std::os::unix::process::ExitStatusExt;
    let mut sb = Sandbox::new(userns_config());
    // The copy-up of /run opens this image file: the hook is then inside
    // the container's namespace, its host steps done.
    let gate = OpenGate::new(&sb.rootfs.join("run/seed-run"));
    let state = json!({"ociVersion": "1.0.2", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let mut hook = Command::new(HOOK)
        .current_dir(&sb.bundle)
        .env_remove("stage")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut hook.stdin.take().unwrap(),
        state.to_string().as_bytes(),
    )
    .unwrap();
    let mut killed = false;
    while !killed {
        for (pid, event) in gate.waiting() {
            if pid == hook.id() as i32 {
                // As a hooks.d timeout does: SIGKILL.
                hook.kill().unwrap();
                killed = true;
            }
            gate.allow(event);
        }
        if !killed && let Some(st) = hook.try_wait().unwrap() {
            panic!("the hook ended ({st}) without opening the gated file");
        }
    }
    assert_eq!(hook.wait().unwrap().signal(), Some(libc::SIGKILL));
    drop(gate);

    // What the killed prestart left on the host: the journal dir, and with a
    // user namespace the own cgroup chowned.
    assert!(
        sb.host_journal().is_dir(),
        "the kill came after the host steps"
    );
    assert_eq!(std::fs::metadata(&sb.cgroup_dirs[0]).unwrap().uid(), 100000);

    // The runtime's delete: the container's processes and its cgroup go
    // (runc's destroy() removes the cgroup, then runs poststop).
    sb.sleeper.kill().unwrap();
    sb.sleeper.wait().unwrap();
    for d in &sb.cgroup_dirs {
        for _ in 0..100 {
            if std::fs::remove_dir(d).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!d.exists(), "{}", d.display());
    }
    assert_ok(&sb.poststop());
    assert!(
        !sb.host_journal().exists(),
        "poststop removes the journal dir a killed prestart made"
    );
    // A prestart that finished keeps its journal dir after poststop.
    let sb2 = Sandbox::new(json!({}));
    assert_ok(&sb2.prestart());
    assert_ok(&sb2.poststop());
    assert!(sb2.host_journal().is_dir());
}

/// Makes a host mount shared for the test's duration, as systemd hosts have
/// it, and private again afterwards.
struct SharedForTest(&'static str);

impl SharedForTest {
    fn new(path: &'static str) -> SharedForTest {
        assert!(
            Command::new("mount")
                .args(["--make-shared", path])
                .status()
                .unwrap()
                .success()
        );
        SharedForTest(path)
    }
}

impl Drop for SharedForTest {
    fn drop(&mut self) {
        let _ = Command::new("mount")
            .args(["--make-private", self.0])
            .status();
    }
}

#[test]
#[serial_test::serial]
fn binds_of_shared_host_mounts_do_not_propagate_back_to_the_host() {
    // On a systemd host the cgroup hierarchies are shared mounts: a clone of
    // one joins the host's peer group, so the own-cgroup bind made on top of
    // it inside the container would appear on the host unless the clone is
    // made private first.
    let sb = Sandbox::new(json!({}));
    let hierarchy = match sb.layout {
        Layout::Unified => "/sys/fs/cgroup",
        _ => "/sys/fs/cgroup/systemd",
    };
    let _shared = SharedForTest::new(hierarchy);
    let before = host_mounts();
    assert_ok(&sb.prestart());
    assert_eq!(
        host_mounts(),
        before,
        "a mount made in the container appeared on the host"
    );
    let own = sb
        .mount_at(&format!("{hierarchy}{}", sb.cgroup))
        .expect("own cgroup bound inside");
    assert!(!own.is_shared());
}

/// Makes `n` directories `<rootfs>/run/m<i>` and bind-mounts each onto
/// itself inside the sandbox's mount namespace (a private one), with one
/// child process doing the `mount(2)` calls after `setns`.
fn bind_many_under_run(sb: &Sandbox, n: usize) {
    use std::os::unix::process::CommandExt;
    let paths: Vec<std::ffi::CString> = (0..n)
        .map(|i| {
            let p = sb.host_path(&format!("/run/m{i}"));
            std::fs::create_dir_all(&p).unwrap();
            std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).unwrap()
        })
        .collect();
    let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", sb.pid())).unwrap();
    let mut cmd = Command::new("true");
    // SAFETY: the closure runs in the forked child before exec; it only makes
    // system calls on data prepared beforehand (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Mount),
            )?;
            for p in &paths {
                rustix::mount::mount_bind(p.as_c_str(), p.as_c_str())?;
            }
            Ok(())
        });
    }
    assert!(cmd.status().unwrap().success(), "bind {n} mounts");
}

/// CPU time (user + system) of the reaped children so far, in seconds.
fn children_cpu() -> f64 {
    // SAFETY: getrusage(2) fills the zeroed struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut u), 0);
        u
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// Mounts in the sandbox's namespace under container path `/run/m*` whose
/// parent is the mount with id `parent`.
fn submounts_of(sb: &Sandbox, parent: u64, n: usize) -> usize {
    let want: std::collections::HashSet<_> = (0..n)
        .map(|i| sb.host_path(&format!("/run/m{i}")))
        .collect();
    sb.mounts()
        .iter()
        .filter(|m| m.parent == parent && want.contains(&m.mount_point))
        .count()
}

fn many_mounts_under_run(n: usize) -> f64 {
    let sb = Sandbox::new(json!({}));
    bind_many_under_run(&sb, n);
    let before = children_cpu();
    let o = sb.prestart();
    let cpu = children_cpu() - before;
    assert_ok(&o);
    let run = sb.mount_at("/run").expect("tmpfs on /run");
    assert_eq!(run.fs_type, "tmpfs");
    assert_eq!(
        submounts_of(&sb, run.id, n),
        n,
        "every mount under /run is kept, now on the hook's tmpfs"
    );
    cpu
}

#[test]
#[serial_test::serial]
fn many_mounts_under_run_all_survive() {
    let cpu = many_mounts_under_run(500);
    eprintln!("500 mounts under /run: prestart CPU {cpu:.3} s");
}

/// The timing table of issue 13 (run by hand; prints, asserts only counts):
/// `cargo test --release --test privileged many_mounts_cost -- --ignored --nocapture`.
/// `OSH_MOUNT_COUNTS=1000,2000` picks the counts.
#[test]
#[ignore]
#[serial_test::serial]
fn many_mounts_cost() {
    let counts = std::env::var("OSH_MOUNT_COUNTS").unwrap_or("1000,2000,4000,8000".into());
    for n in counts
        .split(',')
        .map(|s| s.trim().parse::<usize>().unwrap())
    {
        let cpu = many_mounts_under_run(n);
        eprintln!("mounts under /run: {n:>6}  prestart CPU (user+sys): {cpu:.3} s");
    }
}

/// A tmpfs mounted in the HOST mount namespace on a directory whose name is
/// not UTF-8 (and holds a space, which mountinfo escapes), as any local user
/// can make one with the setuid `fusermount3`. Unmounted (lazily) and
/// removed on drop, whatever the test did.
struct NonUtf8HostMount {
    point: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NonUtf8HostMount {
    fn new() -> NonUtf8HostMount {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::Builder::new()
            .prefix("osh-nonutf8-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let point = dir.path().join(std::ffi::OsStr::from_bytes(b"x\xff y\xfe"));
        std::fs::create_dir(&point).unwrap();
        rustix::mount::mount(
            "osh-test",
            &point,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        NonUtf8HostMount { point, _dir: dir }
    }
}

impl Drop for NonUtf8HostMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.point, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
#[serial_test::serial]
fn a_host_mount_point_that_is_not_utf8_does_not_stop_prestart() {
    let bad = NonUtf8HostMount::new();
    assert!(
        host_mounts().contains(&bad.point),
        "the host's mount table shows the path, decoded"
    );
    // Made after the host mount: the container's table holds it too.
    let sb = Sandbox::new(json!({}));
    assert!(sb.mounts().iter().any(|m| m.mount_point == bad.point));
    assert_ok(&sb.prestart());
    assert_eq!(
        sb.mount_at("/run")
            .map(|m| m.fs_type.to_string_lossy().into_owned())
            .as_deref(),
        Some("tmpfs")
    );
    assert!(
        sb.mount_at(&format!("/var/log/journal/{}", sb.machine_id()))
            .is_some()
    );
    assert_ok(&sb.poststop());
}

#[test]
#[serial_test::serial]
fn an_id_longer_than_256_bytes_reuses_its_journal_dir() {
    let mut sb = Sandbox::new(json!({}));
    sb.id = format!("{}{}", sb.id, "a".repeat(300 - sb.id.len()));
    assert_eq!(sb.id.len(), 300);
    assert_ok(&sb.prestart());
    assert!(sb.host_journal().is_dir());
    // The same container started again (a new namespace, the same id).
    let mut again = Sandbox::new(json!({}));
    again.id = sb.id.clone();
    let o = again.prestart();
    assert_ok(&o);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("not made for this container"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        again
            .mount_at(&format!("/var/log/journal/{}", again.machine_id()))
            .is_some(),
        "the journal dir the first start made is bound again"
    );
}

/// The stderr lines of a hook run that mention systemd-machined.
fn machined_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains("machined"))
        .map(str::to_string)
        .collect()
}

fn assert_prepared(sb: &Sandbox) {
    let run = sb.mount_at("/run").expect("tmpfs on /run");
    assert_eq!(run.fs_type, "tmpfs");
    assert_eq!(
        sb.read("/etc/machine-id").unwrap(),
        format!("{}\n", sb.machine_id()).as_bytes()
    );
    assert!(
        sb.mount_at(&format!("/var/log/journal/{}", sb.machine_id()))
            .is_some()
    );
}

#[test]
#[serial_test::serial]
fn without_systemd_machined_is_one_info_line_and_nothing_else() {
    // This host: PID 1 is not systemd, so there is no /run/systemd/system.
    require_root();
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "this test is for a host not booted with systemd"
    );
    let sb = Sandbox::new(json!({}));
    let state = json!({"ociVersion": "1.0.2", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let o = sb.hook(&state, &[], false);
    assert_ok(&o);
    let lines: Vec<String> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("oci-systemd-hook: info: "),
        "{lines:?}"
    );
    assert!(
        lines[0].ends_with(
            "; systemd-machined registration: not a systemd host (no /run/systemd/system)"
        ),
        "{lines:?}"
    );
    assert_prepared(&sb);
    // Poststop says nothing about it.
    let o = sb.poststop();
    assert_ok(&o);
    assert_eq!(machined_lines(&o.stderr), Vec::<String>::new());
    // Turned off in the hook's environment: the same line without the reason
    // of the host, the same work.
    let sb = Sandbox::new(json!({}));
    let state = json!({"ociVersion": "1.0.2", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let o = sb.hook(&state, &[("OCI_SYSTEMD_HOOK_MACHINE", "0")], false);
    assert_ok(&o);
    let lines = machined_lines(&o.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with("OCI_SYSTEMD_HOOK_MACHINE turns it off in the hook's environment"),
        "{lines:?}"
    );
    assert_prepared(&sb);
}

/// Runs the hook's prestart (and, with `poststop`, its poststop) for `sb`
/// in a private mount namespace with a /run/systemd/system and a real
/// dbus-daemon as the system bus; `answers`: whether the bus policy lets
/// replies reach the hook (without, its Hello is never answered). Returns
/// (exit code, stderr) of each run. No machined is faked: the bus has none.
fn with_private_system_bus(sb: &Sandbox, answers: bool, poststop: bool) -> Vec<(String, Vec<u8>)> {
    let dir = sb.dir.path();
    let receive = if answers {
        r#"<allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>"#
    } else {
        ""
    };
    std::fs::write(
        dir.join("bus.conf"),
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*"/>
    <allow own="*"/>
    {receive}
  </policy>
</busconfig>
"#
        ),
    )
    .unwrap();
    let pre = json!({"ociVersion": "1.0.2", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let post =
        json!({"ociVersion": "1.0.2", "id": sb.id, "status": "stopped", "bundle": sb.bundle});
    std::fs::write(dir.join("pre.json"), pre.to_string()).unwrap();
    std::fs::write(dir.join("post.json"), post.to_string()).unwrap();
    let post_cmd = if poststop {
        "rc=0; env -i {hook} < {d}/post.json 2> {d}/post.err || rc=$?; echo $rc > {d}/post.rc"
    } else {
        ""
    };
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || {{ mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd; }}
mkdir /run/systemd/system
mount -t tmpfs tmpfs /run/dbus 2>/dev/null || {{ mkdir -p /run/dbus && mount -t tmpfs tmpfs /run/dbus; }}
dbus-daemon --config-file={{d}}/bus.conf --nofork --nopidfile & dp=$!
trap 'kill $dp' EXIT
for i in $(seq 200); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.05; done
cd {{bundle}}
rc=0; {{hook}} < {{d}}/pre.json 2> {{d}}/pre.err || rc=$?; echo $rc > {{d}}/pre.rc
{post_cmd}"#
    )
    .replace("{d}", &dir.display().to_string())
    .replace("{bundle}", &sb.bundle.display().to_string())
    .replace("{hook}", HOOK);
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut out = vec![(
        String::from_utf8_lossy(&read("pre.rc")).trim().to_string(),
        read("pre.err"),
    )];
    if poststop {
        out.push((
            String::from_utf8_lossy(&read("post.rc")).trim().to_string(),
            read("post.err"),
        ));
    }
    out
}

fn lines_of(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[serial_test::serial]
fn a_system_bus_without_machined_is_one_info_line_and_nothing_else() {
    // A systemd host whose bus has no org.freedesktop.machine1 (no
    // systemd-container package). The hook connects before it joins the
    // container's namespace and calls after; the bus answers ServiceUnknown.
    require_root();
    let sb = Sandbox::new(json!({}));
    let runs = with_private_system_bus(&sb, true, true);
    let (rc, err) = &runs[0];
    let lines = lines_of(err);
    assert_eq!(rc, "0", "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("oci-systemd-hook: info: "),
        "{lines:?}"
    );
    assert!(
        lines[0].ends_with("; systemd-machined registration: machined is not on the system bus"),
        "{lines:?}"
    );
    // Prepared as usual (poststop ran too, which emptied the machine-id).
    assert_eq!(sb.mount_at("/run").unwrap().fs_type, "tmpfs");
    assert!(
        sb.mount_at(&format!("/var/log/journal/{}", sb.machine_id()))
            .is_some()
    );
    assert_eq!(sb.read("/etc/machine-id").unwrap(), b"");
    let (rc, err) = &runs[1];
    assert_eq!(rc, "0", "{}", String::from_utf8_lossy(err));
    assert_eq!(machined_lines(err), Vec::<String>::new());
}

#[test]
#[serial_test::serial]
fn a_system_bus_that_never_answers_is_one_warning_and_prestart_exits_0() {
    // The bus takes the connection but its policy drops every reply, so the
    // Hello is never answered (zbus does not bound it): the hook gives up
    // after its bound with one warning and the container is prepared.
    require_root();
    let sb = Sandbox::new(json!({}));
    let runs = with_private_system_bus(&sb, false, false);
    let (rc, err) = &runs[0];
    let lines = lines_of(err);
    assert_eq!(rc, "0", "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("oci-systemd-hook: warn: ")
            && lines[0]
                .contains("cannot register with systemd-machined: no answer on the system bus"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("oci-systemd-hook: info: ") && !lines[1].contains("machined"),
        "{lines:?}"
    );
    assert_prepared(&sb);
}

/// The cgroup2 view on a hybrid host, for an image whose systemd has no v1
/// support (262) and one with no systemd found: the host's cgroup2 hierarchy
/// (`/sys/fs/cgroup/unified`) read-only at `/sys/fs/cgroup` with the own
/// cgroup writable at its path; with a private cgroupns the own cgroup at
/// `/sys/fs/cgroup`. No v1 tmpfs of the hook's.
#[test]
#[serial_test::serial]
fn hybrid_host_gives_a_v2_only_systemd_the_cgroup2_view() {
    if oci_systemd_hook::cgroup::detect_layout().unwrap() != Layout::Hybrid {
        eprintln!("not a hybrid host: the hybrid rule is tested in the VMs");
        return;
    }
    for systemd in [Some(262), None] {
        let sb = Sandbox::with_systemd(json!({}), None, systemd);
        let host_before = host_mounts();
        assert_ok(&sb.prestart());
        let h = sb
            .mount_at("/sys/fs/cgroup")
            .expect("cgroup2 at /sys/fs/cgroup");
        assert_eq!(h.fs_type, "cgroup2", "{systemd:?}");
        assert_eq!(h.root, Path::new("/"));
        assert!(has_flag(&h, "ro"), "hierarchy read-only");
        let own = sb
            .mount_at(&format!("/sys/fs/cgroup{}", sb.cgroup))
            .expect("own cgroup");
        assert_eq!(own.fs_type, "cgroup2");
        assert_eq!(own.root, Path::new(&sb.cgroup));
        assert!(has_flag(&own, "rw"), "own cgroup writable");
        assert!(sb.mount_at("/sys/fs/cgroup/systemd").is_none());
        assert_eq!(host_mounts(), host_before);
        assert_ok(&sb.poststop());

        let sb = Sandbox::with_systemd(
            json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "cgroup"}]}}),
            None,
            systemd,
        );
        assert_ok(&sb.prestart());
        let m = sb.mount_at("/sys/fs/cgroup").unwrap();
        assert_eq!(m.fs_type, "cgroup2");
        assert_eq!(m.root, Path::new(&sb.cgroup));
        assert!(has_flag(&m, "rw"));
    }
}

/// User namespaces with the cgroup2 view on a hybrid host: the own cgroup2
/// directory and the files systemd writes belong to mapped root, its parent
/// does not; a failed prestart gives them back.
#[test]
#[serial_test::serial]
fn user_namespace_root_owns_its_cgroup2_dir_on_a_hybrid_host() {
    if oci_systemd_hook::cgroup::detect_layout().unwrap() != Layout::Hybrid {
        eprintln!("not a hybrid host: the hybrid rule is tested in the VMs");
        return;
    }
    let sb = Sandbox::with_systemd(userns_config(), None, Some(262));
    assert_ok(&sb.prestart());
    let cg = Path::new("/sys/fs/cgroup/unified").join(sb.cgroup.trim_start_matches('/'));
    for f in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        let m = std::fs::metadata(cg.join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (100000, 100000),
            "{}",
            cg.join(f).display()
        );
    }
    assert_eq!(std::fs::metadata(cg.parent().unwrap()).unwrap().uid(), 0);
    // The v1 name=systemd cgroup is not the one systemd uses: not chowned.
    let v1 = Path::new("/sys/fs/cgroup/systemd").join(sb.cgroup.trim_start_matches('/'));
    assert_eq!(std::fs::metadata(&v1).unwrap().uid(), 0);

    // A prestart that fails after the delegation gives the files back.
    let sb = Sandbox::with_systemd(userns_config(), None, Some(262));
    std::fs::remove_dir_all(sb.rootfs.join("tmp")).unwrap();
    std::fs::write(sb.rootfs.join("tmp"), b"a file where a directory belongs").unwrap();
    let o = sb.prestart();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cg = Path::new("/sys/fs/cgroup/unified").join(sb.cgroup.trim_start_matches('/'));
    for f in ["", "cgroup.procs"] {
        assert_eq!(
            std::fs::metadata(cg.join(f)).unwrap().uid(),
            0,
            "{f} given back"
        );
    }
}

/// A stand-in for a legacy (v1-only) host: a process in a private mount
/// namespace where cgroup2 is unmounted (`/sys/fs/cgroup/unified`), so that
/// the hook run there sees no cgroup2 anywhere.
struct LegacyHost(std::process::Child);

impl LegacyHost {
    fn new() -> LegacyHost {
        let ours = ns_inode(std::process::id());
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("umount /sys/fs/cgroup/unified && exec sleep 600")
            .spawn()
            .unwrap();
        let pid = child.id();
        while ns_inode(pid) == ours
            || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        LegacyHost(child)
    }
}

impl Drop for LegacyHost {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A legacy host and an image whose systemd has no v1 support (262): the
/// hook mounts a cgroup2 of its own in the container's namespace (read-only,
/// the container's cgroup writable), moves the container into
/// `/oci-systemd-hook-<id>` of cgroup2 and removes that cgroup at poststop;
/// a failed prestart removes it at once. Nothing is mounted on the host.
#[test]
#[serial_test::serial]
fn legacy_host_gives_a_v2_only_systemd_a_cgroup2_of_its_own() {
    if oci_systemd_hook::cgroup::detect_layout().unwrap() != Layout::Hybrid {
        eprintln!("needs a hybrid host to stand in for a legacy one");
        return;
    }
    let host = LegacyHost::new();
    let mut sb = Sandbox::with_systemd(json!({}), Some(host.0.id()), Some(262));
    let name = format!("oci-systemd-hook-{}", sb.id);
    // Seen from here, where cgroup2 is still mounted.
    let on_host = Path::new("/sys/fs/cgroup/unified").join(&name);
    let host_before = host_mounts();
    assert_ok(&sb.prestart());
    assert!(on_host.is_dir(), "{} made", on_host.display());
    let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid())).unwrap();
    assert!(cg.contains(&format!("0::/{name}\n")), "moved: {cg}");
    let h = sb
        .mount_at("/sys/fs/cgroup")
        .expect("cgroup2 at /sys/fs/cgroup");
    assert_eq!(h.fs_type, "cgroup2");
    assert_eq!(h.root, Path::new("/"));
    assert!(has_flag(&h, "ro"));
    let own = sb
        .mount_at(&format!("/sys/fs/cgroup/{name}"))
        .expect("own cgroup");
    assert_eq!(own.fs_type, "cgroup2");
    assert_eq!(own.root, Path::new("/").join(&name));
    assert!(has_flag(&own, "rw"));
    assert_eq!(host_mounts(), host_before, "nothing mounted on the host");
    // systemd would make cgroups beneath its own: poststop removes them too.
    std::fs::create_dir(on_host.join("init.scope")).unwrap();
    let _ = sb.sleeper.kill();
    let _ = sb.sleeper.wait();
    assert_ok(&sb.poststop());
    assert!(
        !on_host.exists(),
        "{} removed at poststop",
        on_host.display()
    );

    // A failed prestart: the cgroup is gone at once, the process back at
    // the root of cgroup2.
    let sb = Sandbox::with_systemd(json!({}), Some(host.0.id()), Some(262));
    std::fs::remove_dir_all(sb.rootfs.join("tmp")).unwrap();
    std::fs::write(sb.rootfs.join("tmp"), b"a file where a directory belongs").unwrap();
    let o = sb.prestart();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let on_host = Path::new("/sys/fs/cgroup/unified").join(format!("oci-systemd-hook-{}", sb.id));
    assert!(
        !on_host.exists(),
        "{} removed after the failure",
        on_host.display()
    );
    let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid())).unwrap();
    assert!(cg.contains("0::/\n"), "moved back: {cg}");
    assert_eq!(host_mounts(), host_before);

    // With a user namespace mapped root owns the cgroup and what systemd
    // writes in it; its parent (the cgroup2 root) stays root's.
    let mut sb = Sandbox::with_systemd(userns_config(), Some(host.0.id()), Some(262));
    assert_ok(&sb.prestart());
    let on_host = Path::new("/sys/fs/cgroup/unified").join(format!("oci-systemd-hook-{}", sb.id));
    for f in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        let m = std::fs::metadata(on_host.join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (100000, 100000),
            "{}",
            on_host.join(f).display()
        );
    }
    assert_eq!(
        std::fs::metadata("/sys/fs/cgroup/unified").unwrap().uid(),
        0
    );
    let _ = sb.sleeper.kill();
    let _ = sb.sleeper.wait();
    assert_ok(&sb.poststop());
    assert!(!on_host.exists());

    // A v1-capable systemd on the same host keeps the v1 view: no cgroup2.
    let sb = Sandbox::with_systemd(json!({}), Some(host.0.id()), Some(257));
    assert_ok(&sb.prestart());
    assert_eq!(sb.mount_at("/sys/fs/cgroup").unwrap().fs_type, "tmpfs");
    assert!(
        !Path::new("/sys/fs/cgroup/unified")
            .join(format!("oci-systemd-hook-{}", sb.id))
            .exists()
    );
}
