package account_test

import (
	"os"
	"testing"

	"taskjuice/internal/account"
)

func TestMain(m *testing.M) {
	account.UseLightPasswordHashing()
	os.Exit(m.Run())
}
