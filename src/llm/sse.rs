//! Server-sent events over a streaming HTTP body, with an idle timeout between chunks.
//! Shared by both adapters; framing is done by `eventsource-stream`.
