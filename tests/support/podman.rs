//! podman as the container and package tests run it.

use crate::command;
use crate::netns::Netns;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// This kind of host's podman settings (runc, ulimits under the hard
/// limits: packaging/containers.conf) unless CONTAINERS_CONF is set.
fn with_conf(mut c: Command) -> Command {
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        c.env("CONTAINERS_CONF", Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/containers.conf"));
    }
    c
}

/// `podman`.
pub fn podman() -> Command {
    with_conf(command("podman"))
}

/// `podman` in `ns`'s network namespace, where `--network=host` is `ns`.
/// (`ip netns exec` would also remount /sys and hide the cgroup mounts
/// runc needs.)
pub fn podman_in(ns: &Netns) -> Command {
    let mut c = command("nsenter");
    c.arg(format!("--net=/run/netns/{}", ns.name())).arg("podman");
    with_conf(c)
}

/// Removes the container `name` (`podman rm -f -t 0`), whatever its state;
/// for guards' `drop`, so a failure is only said.
pub fn remove_container(name: &str) {
    match crate::run_unchecked(podman().args(["rm", "-f", "-t", "0", name]), Duration::from_secs(60)) {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("warning: cannot remove container {name}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("warning: cannot remove container {name}: {e}"),
    }
}
