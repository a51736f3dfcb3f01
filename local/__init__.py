"""The whole Bin Count pipeline on one machine: moto server, local Batch Transform, demo."""
