package app

import (
	"os"
	"testing"

	"github.com/modelops/modelops/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.ServeVerifyChild()
	os.Exit(m.Run())
}
