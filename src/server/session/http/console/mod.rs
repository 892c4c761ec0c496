//! The web console on port 4021: the pages a browser loads ([`assets`], embedded in the
//! binary) and, beside them, the login and the JSON API those pages call.

pub mod assets;
