//! SOFARPC Bolt v1 (placeholder: the Bolt codec is written on its own branch and implements
//! [`super::XProtocol`]).
