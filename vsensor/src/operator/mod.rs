//! The operators' API: the fleet's status (`/status`, `/v1/operator/status`,
//! `/metrics`; [`status`]) and response actions (`/v1/operator/actions`;
//! [`actions`]), with the operators' tokens from `DATA_DIR/operator.json`
//! ([`crate::operator_file`]), which only the collector's host holds; who
//! may do what is [`auth`]. Sensors hold the HMAC key, not these tokens, so
//! a sensor cannot order actions. Which paths reach these handlers, and on
//! which listener, is the router's business.

pub mod actions;
pub mod auth;
pub mod status;
