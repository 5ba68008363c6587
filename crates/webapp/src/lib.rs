//! The web app (work in progress).
