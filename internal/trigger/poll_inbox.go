package trigger

func init() {
	// Sandbox Inbox serves the same channel messages API as Sandbox Chat
	// (its read-messages action), read the same way.
	pollSources[[2]string{"sandbox-inbox", "new-message"}] = chatMessages{}
}
