"""Input pipelines: readers, augmentation, resize/pad, and the synthetic demo dataset."""
