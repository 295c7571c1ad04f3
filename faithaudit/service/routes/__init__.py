"""HTTP routes: each validates, calls the store or the queue, and returns a schema."""
