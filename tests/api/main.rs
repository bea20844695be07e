//! The integration suite as one test binary (one link of the crate for every test): one module per area, one set
//! of helpers ([`common`]). Modules that drive the `cloudagent` binary need the `cli` feature, as the binary does.

#[macro_use]
mod common;

mod alerts;
mod analytics;
#[cfg(feature = "cli")]
mod cli;
mod context;
mod http_api;
mod infra;
mod layout;
#[cfg(feature = "cli")]
mod log_hygiene;
#[cfg(feature = "cli")]
mod monitor;
mod oidc;
mod openapi_contract;
mod perimeter;
#[cfg(feature = "cli")]
mod platforms;
mod progress;
mod progress_sdk;
#[cfg(feature = "cli")]
mod rate_limit;
mod sdk_client;
mod sdk_token_manager;
mod store_conformance;
mod store_outage;
mod tasks;
mod token_routes;
mod tokens;
