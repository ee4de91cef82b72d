//! Shared virtual memory: the layer that maps memory two processes share.
//!
//! It will hold memfd-backed segments (create, seal, share by fd, attach, header, in-segment
//! heap), named segments for attach-by-name, and the process-shared message queue. It knows
//! nothing about API messages. Nothing is implemented yet.
