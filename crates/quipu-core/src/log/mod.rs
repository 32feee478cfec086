//! The log: the truth of the store. Segment files of framed, checksummed
//! records, one record per committed append ([`record`]), written by one
//! writer and read by many ([`segment`]), recovered on open ([`recovery`]), with the durable mark saying where acknowledged records end ([`mark`]).

pub mod mark;
pub mod record;
pub mod recovery;
pub mod segment;
