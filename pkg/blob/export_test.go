package blob

// SetSegmentSize changes the segment size e writes, so tests can cover many segments with
// small blobs. Readers take the size from each blob's header.
func SetSegmentSize(e *Encrypted, n int) { e.segSize = n }
