"""Reading what comes in: images of any PIL mode, DICOM, large images and slides, image sets (folders or Hub
datasets) with their splits and groups, decoding them once, and augmenting batches on the device."""
