"""The simulated exchange: an engine that keeps books, and Binance's REST dialect on top."""
