package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/tokenizer"
)

func newTokenizeCommand() *cobra.Command {
	var (
		tokPath    string
		text       string
		textFile   string
		noSpecial  bool
		showTokens bool
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --tokenizer PATH (--text TEXT | --file PATH)",
		Short: "Encode text with a Hugging Face tokenizer.json and print the token ids",
		Long: `tokenize encodes text exactly as Hugging Face tokenizers does: byte-level BPE
(Llama 3, Qwen) or SentencePiece-style BPE with byte fallback (Llama 2,
Mistral), splitting on added and special tokens first. By default the
tokenizer's post-processor adds its special tokens (e.g. <s> for Llama 2);
--no-special turns that off.`,
		Example: `  harness tokenize --tokenizer ~/models/Qwen3-8B --text "Hello, world"
  harness tokenize --tokenizer tokenizer.json --no-special --text "<|im_start|>user" --json
  harness tokenize --tokenizer ~/models/Llama-2-7b-hf --file story.txt --show-tokens`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokPath == "" {
				return usagef(cmd, "--tokenizer is required")
			}
			if cmd.Flags().Changed("text") == cmd.Flags().Changed("file") {
				return usagef(cmd, "give exactly one of --text or --file")
			}
			if textFile != "" {
				b, err := os.ReadFile(textFile)
				if err != nil {
					return fmt.Errorf("--file: %w", err)
				}
				text = string(b)
			}
			tok, err := tokenizer.Load(tokPath)
			if err != nil {
				return fmt.Errorf("--tokenizer: %w", err)
			}
			ids, err := tok.Encode(text, !noSpecial)
			if err != nil {
				return fmt.Errorf("encode: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				res := struct {
					IDs    []int    `json:"ids"`
					Tokens []string `json:"tokens,omitempty"`
				}{IDs: ids}
				if res.IDs == nil {
					res.IDs = []int{}
				}
				if showTokens {
					res.Tokens = tokenStrings(tok, ids)
				}
				enc := json.NewEncoder(out)
				return enc.Encode(res)
			}
			if showTokens {
				for i, s := range tokenStrings(tok, ids) {
					fmt.Fprintf(out, "%d\t%q\n", ids[i], s)
				}
				return nil
			}
			_, err = fmt.Fprintln(out, joinIDs(ids))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer.json, or a model folder that holds one")
	f.StringVar(&text, "text", "", "text to encode")
	f.StringVar(&textFile, "file", "", "read the text to encode from this file")
	f.BoolVar(&noSpecial, "no-special", false, "do not add the post-processor's special tokens (BOS etc.)")
	f.BoolVar(&showTokens, "show-tokens", false, "print each id with its token string")
	f.BoolVar(&asJSON, "json", false, `print {"ids": [...]} as JSON`)
	_ = cmd.MarkFlagFilename("tokenizer", "json")
	_ = cmd.MarkFlagFilename("file")
	return cmd
}

func tokenStrings(tok *tokenizer.Tokenizer, ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		s, ok := tok.IDToToken(id)
		if !ok {
			s = fmt.Sprintf("<id %d>", id)
		}
		out[i] = s
	}
	return out
}
