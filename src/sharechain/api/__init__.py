"""The one wire: RFC 9421 request signing and checking, the codec, the client."""
