//! How server functions answer: JSON, decoded from text.
//!
//! Leptos hydrates resources with `serde_json::from_str` while its own JSON
//! codec decodes server-function answers with `from_slice`; each type the UI
//! receives then carries two deserializers in the wasm bundle. Decoding
//! answers from text as well keeps one (the bundle is size-bound).

use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::{Serialize, de::DeserializeOwned};

pub struct JsonTextEncoding;

/// The output encoding of every server function.
pub type JsonText = Post<JsonTextEncoding>;

impl ContentType for JsonTextEncoding {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonTextEncoding {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonTextEncoding {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonTextEncoding {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(|err| {
            <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8: {err}"))
        })?;
        serde_json::from_str(text)
    }
}
