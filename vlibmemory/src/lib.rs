//! The shared-memory API transport.
//!
//! It will hold the API segment layout (queues and message rings inside an svm segment), client
//! registration over shared memory, keepalive pings and the dead-client reaper. Nothing is
//! implemented yet.
