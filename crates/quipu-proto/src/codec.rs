//! The codec of every generated service and client: prost's, except that
//! a message that does not decode is `INVALID_ARGUMENT` (the caller sent
//! bytes that are not the message), as `streams.proto` promises, where
//! tonic's prost codec says `INTERNAL`. Encoding is prost's.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost's codec with decode failures as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        StrictCodec { _messages: PhantomData }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> StrictDecoder<U> {
        StrictDecoder { _message: PhantomData }
    }
}

/// Decodes `U`, a failure being `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(decode_error)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The status of a message that does not decode: `INVALID_ARGUMENT`,
/// saying why.
#[must_use]
pub fn decode_error(error: prost::DecodeError) -> Status {
    Status::invalid_argument(format!("malformed message: the request's protobuf does not decode: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_the_message_are_an_invalid_argument() {
        // A field header announcing 16 bytes of a length-delimited field,
        // then none.
        let error = crate::v1::AppendRequest::decode(&[0x0a, 0x10][..]).expect_err("truncated");
        let status = decode_error(error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("does not decode"), "{}", status.message());
    }
}
