"""IO at the edges: Delta tables (`etl.io.delta`) and object storage (`etl.io.objects`)."""
