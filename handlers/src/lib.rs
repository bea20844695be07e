//! Cloud Agent's task handlers, apart from the server: the contract a task type implements ([`Handler`],
//! [`Descriptor`]), the hooks the engine runs around handlers ([`Hook`]), the [`Registry`] a deployment is built
//! with, the SSRF-safe HTTP client handlers are given ([`outbound`]), and the built-in handlers ([`builtin`], one
//! cargo feature each). It depends on no server code: the server, the worker and a plugin crate all use it.

pub mod builtin;
pub mod contract;
pub mod hooks;
pub mod input;
pub mod outbound;
pub mod registry;

pub use contract::{
    Context, Descriptor, Failure, FailureKind, Handler, INPUT_FAILURE, Limits, Rejection, TRANSIENT_FAILURE, TaskInfo,
    blocking,
};
pub use hooks::Hook;
pub use input::InputError;
pub use registry::{Builder, Registry, RegistryError, TaskType};
