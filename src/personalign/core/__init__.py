"""The params schema, the stage table, seeds, hardware, paths, locks, the built-in world and the record, table and
figure formats. Imports nothing else of personalign."""
