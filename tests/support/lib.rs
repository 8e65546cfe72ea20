//! Test support for the integration tests (namespaces, processes, collectors).
