//! The web app's database (work in progress).
