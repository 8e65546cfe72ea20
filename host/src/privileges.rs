//! This process's privileges as the kernel reports them (/proc/self/status,
//! parsed by `ossensor_shared::privileges`), and their audit.

use ossensor_shared::privileges::Privileges;

/// This process's privileges (empty if /proc is not mounted).
pub fn current() -> Privileges {
    Privileges::from_status(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

/// Audits this process's privileges (`event=privileges`); each process
/// calls it once it holds its final set. Returns what it audited, for
/// callers that also log it.
pub fn audit_current() -> Privileges {
    let held = current();
    let fields = held.audit_fields();
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::log::audit(crate::log::AuditSeverity::Notice, "privileges", &borrowed);
    held
}
