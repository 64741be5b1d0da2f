//! Authentication and authorisation: passwords, tokens, login throttling, the caller's
//! identity and role guards, sessions, and the `/auth` and `/me` endpoints.

pub mod endpoints;
pub mod password;
pub mod principal;
pub mod session;
pub mod session_cookie;
pub mod throttle;
pub mod token;

pub use principal::{Authenticated, Principal, Role};
