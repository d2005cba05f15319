"""retrieval: model embeddings, the retrieval index and task-to-model queries.

Nothing is implemented here yet; the package exists so the distribution's layout matches
DESIGN.md. Weight-space embeddings come from `weightspace` metanetworks.
"""
