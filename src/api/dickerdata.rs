//! dickerdata client (work in progress: lands with issue 2).
