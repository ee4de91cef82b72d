//! The transport-agnostic API message layer.
//!
//! It will hold message definitions (from VPP's `.api.json` format), the network-byte-order
//! codec, the name+CRC message table, the handler registry with plugin ID ranges, and the API
//! JSON export. It does no I/O and contains no unsafe code. Nothing is implemented yet.
#![forbid(unsafe_code)]
