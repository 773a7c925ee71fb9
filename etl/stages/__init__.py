"""One module per pipeline stage; each has pure DataFrame functions and one thin `run(spark, cfg, run_id)`."""
