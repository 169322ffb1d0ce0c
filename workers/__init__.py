"""What runs inside a trial: the proxy model, its data, its training and its scoring."""
