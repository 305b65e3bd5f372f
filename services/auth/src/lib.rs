//! Who a caller is. Three kinds of credentials, one module each:
//!
//! - `password`: accounts of the browser client, argon2id hashes;
//! - `token`: connection tokens (JWT) that an application's backend signs
//!   for its users;
//! - `api_key`: named keys of the server API, kept as digests.
//!
//! Nothing here does I/O but reading key files at start-up: the services
//! decide where credentials come from and what a caller may do.

pub mod api_key;
pub mod password;
pub mod token;
