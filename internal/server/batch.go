package server

// StreamBatch is how many items one message of a Stream* RPC (the batched
// forms of the List RPCs, for nodes whose list would not fit one message)
// carries.
const StreamBatch = 100

// SendBatches sends items through send in slices of at most StreamBatch,
// each item exactly once; nothing is sent for an empty list.
func SendBatches[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(StreamBatch, len(items))
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
