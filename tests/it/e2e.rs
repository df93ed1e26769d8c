//! End-to-end runs of the built `envclone` binary against the moto stand-in.
