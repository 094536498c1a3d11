"""What the embeddings are computed from: image datasets, the paper's class splits, text dictionaries and prompts."""
