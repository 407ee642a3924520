"""The run pages: sign-in, access, the transcript, its live stream, retention."""
