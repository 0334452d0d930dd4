"""Fire alarm panels: serial lines and IP alarm receivers, and the protocols they speak."""
