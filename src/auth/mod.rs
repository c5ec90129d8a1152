//! OAuth flows: Microsoft (device code, auth code + PKCE, refresh; one refresh token for
//! Graph, Partner Center and every customer tenant) and Xero (auth code + PKCE, rotating
//! refresh tokens).

pub mod entra;
pub mod loopback;
pub mod xero;
