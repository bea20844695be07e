//! The API's wire types: what goes over HTTP, defined once. The server serialises these (and derives their
//! OpenAPI schemas with the `openapi` feature); the SDK deserialises the same types, so a renamed field breaks
//! the build of both, not a user.

pub mod admin;
pub mod analytics;
pub mod health;
pub mod problem;
pub mod tasks;

pub use problem::Problem;
