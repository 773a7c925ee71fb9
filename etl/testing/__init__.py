"""Test helpers that ship with the package (fault injection); nothing here runs in a pipeline."""
