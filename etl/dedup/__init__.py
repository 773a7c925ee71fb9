"""Near-duplicate building blocks in plain Python and numpy: MinHash, hyperplane LSH, embeddings, components."""
