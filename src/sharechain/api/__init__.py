"""The one wire: RFC 9421 request signing and checking, the bodies' models, the codec, the client."""
