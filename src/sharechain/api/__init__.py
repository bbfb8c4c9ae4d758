"""The one wire: RFC 9421 request signing, the bodies' models, the codec, the client."""
