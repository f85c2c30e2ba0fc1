"""The worker's line report (`linewatch report`): one line's window read from its own store, as a page."""
