//! The socket API transport.
//!
//! It will hold the AF_UNIX stream server and client with VPP's 16-byte framing, and the pivot
//! from a socket connection to a private shared-memory segment whose fd travels over the socket.
//! Nothing is implemented yet.
#![deny(unsafe_code)]
