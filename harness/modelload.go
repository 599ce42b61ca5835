package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/longctx/longctx/engine/chattemplate"
	"github.com/longctx/longctx/engine/gpu"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/safetensors"
	"github.com/longctx/longctx/engine/tokenizer"
	"github.com/longctx/longctx/engine/weights"
)

// loadedModel is a model with the text side that goes with it. Tokenizer and
// Template are nil when the checkpoint folder has none (tiny test
// checkpoints): such a model takes prompts as ids only.
type loadedModel struct {
	// Model is the CPU engine; GPU the CUDA one. Exactly one is set.
	Model     *model.Model
	GPU       *gpu.Engine
	Tokenizer tokenizer.Encoder
	Template  *chattemplate.Template
}

func (l *loadedModel) Close() error {
	if l.GPU != nil {
		return l.GPU.Close()
	}
	return l.Model.Close()
}

// Config is the model's architecture, whichever engine runs it.
func (l *loadedModel) Config() model.Config {
	if l.GPU != nil {
		return l.GPU.Config()
	}
	return l.Model.Config()
}

// Info describes the loaded model, whichever engine runs it.
func (l *loadedModel) Info() model.Info {
	if l.GPU != nil {
		return l.GPU.Info()
	}
	return l.Model.Info()
}

func openSafetensors(dir string) (weights.Source, error) { return safetensors.Open(dir) }

// loadModel opens a checkpoint folder or a synthetic preset. tokPath, when
// set, overrides the tokenizer found beside the weights.
func loadModel(path, tokPath string, opts model.LoadOptions) (*loadedModel, error) {
	opts.Open = openSafetensors
	m, err := model.Load(path, opts)
	if err != nil {
		return nil, err
	}
	l := &loadedModel{Model: m}
	if err := l.attachText(path, tokPath); err != nil {
		m.Close()
		return nil, err
	}
	return l, nil
}

func (l *loadedModel) attachText(path, tokPath string) error {
	synthetic := strings.HasPrefix(path, model.SyntheticPrefix)
	if tokPath == "" && !synthetic {
		if _, err := os.Stat(filepath.Join(path, "tokenizer.json")); err == nil {
			tokPath = path
		}
	}
	switch {
	case tokPath != "":
		tok, tmpl, err := loadText(tokPath)
		if err != nil {
			return err
		}
		if tok.VocabSize() > l.Config().VocabSize {
			return fmt.Errorf("tokenizer %s has %d ids but the model's vocab_size is %d", tokPath, tok.VocabSize(), l.Config().VocabSize)
		}
		l.Tokenizer, l.Template = tok, tmpl
	case synthetic:
		// Synthetic presets have no tokenizer file; bytes map to ids so text
		// prompts still work (their quality numbers mean nothing anyway).
		tok, err := tokenizer.NewBytes(l.Config().VocabSize)
		if err != nil {
			return fmt.Errorf("byte tokenizer for %s: %w", path, err)
		}
		l.Tokenizer = tok
	}
	return nil
}

// loadText loads tokenizer.json (a file or the folder holding it) and the
// chat template of the tokenizer_config.json beside it; the template is nil
// when there is no tokenizer_config.json.
func loadText(tokPath string) (*tokenizer.Tokenizer, *chattemplate.Template, error) {
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	dir := tokPath
	if !isDir(dir) {
		dir = filepath.Dir(dir)
	}
	tmpl, err := chattemplate.Load(dir)
	switch {
	case err == nil:
		return tok, tmpl, nil
	case errors.Is(err, fs.ErrNotExist):
		return tok, nil, nil
	}
	return nil, nil, fmt.Errorf("chat template: %w", err)
}

// chatTurn renders one system + user turn with the generation prompt, or
// returns nil when tmpl has no chat template (base models).
func chatTurn(tmpl *chattemplate.Template) func(system, user string) (string, error) {
	if tmpl == nil || !tmpl.HasTemplate() {
		return nil
	}
	return func(system, user string) (string, error) {
		var msgs []chattemplate.Message
		if system != "" {
			msgs = append(msgs, chattemplate.Message{Role: "system", Content: system})
		}
		msgs = append(msgs, chattemplate.Message{Role: "user", Content: user})
		return tmpl.Render(msgs, chattemplate.Options{AddGenerationPrompt: true})
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
